"""The REST API for an ERP or finance system, under /api/v1 on the root app (not the /app
sub-app: no session cookie, no CSRF — a bearer token instead, so the two never stand in for
each other).

- ``Authorization: Bearer <token>``, any of ``settings.api_tokens``; compared in constant time
  against every token, so timing says nothing about which (or how much of one) matched.
- Bodies: at most 1 MB (413), validated by the pydantic models of ``webapp.api_models``;
  every error is JSON ``{"error", "details": [{"field", "message"}]}`` with a 4xx.
- Every write is audited (actor_ref "api", platform "api").
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from sales.stage_history import change_deal
from storage.models import AuditLog, Customer, Deal, Invoice, Payment, User, Visit
from webapp import api_models as m
from webapp.core import WebCtx
from webapp.openapi import BASE, document

log = logging.getLogger(__name__)
BODY_CAP = 1024 * 1024
API_CTX = web.AppKey("fieldbot_api", WebCtx)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, error: str, details: list[dict[str, str]] | None = None):
        super().__init__(error)
        self.status, self.error, self.details = status, error, details or []


def _field(name: str, message: str) -> ApiError:
    return ApiError(422, "validation failed", [{"field": name, "message": message}])


def error_json(status: int, error: str, details: list[dict[str, str]] | None = None
               ) -> web.Response:
    return web.json_response({"error": error, "details": details or []}, status=status)


def authorized(settings, header: str | None) -> bool:
    """Constant time over all tokens: no early exit on the first match or mismatch."""
    if not header or not header.startswith("Bearer "):
        return False
    given = header[len("Bearer "):].strip().encode("utf-8", "surrogateescape")
    ok = False
    for tok in settings.api_tokens:
        secret = tok.get_secret_value().encode("utf-8", "surrogateescape")
        ok |= bool(secret) & hmac.compare_digest(given, secret)
    return ok


def endpoint(fn: Handler) -> Handler:
    """Token check, then the handler; every failure becomes a JSON 4xx."""

    @functools.wraps(fn)
    async def inner(request: web.Request) -> web.StreamResponse:
        ctx = request.app[API_CTX]
        if not authorized(ctx.settings, request.headers.get("Authorization")):
            return error_json(401, "missing or invalid bearer token")
        try:
            return await fn(request)
        except ApiError as exc:
            return error_json(exc.status, exc.error, exc.details)
        except ValidationError as exc:
            return _validation(exc)
        except IntegrityError:
            log.info("API write conflict on %s", request.path)
            return error_json(409, "conflict: a concurrent write used the same key; retry")

    return inner


def _validation(exc: ValidationError) -> web.Response:
    errors = exc.errors(include_url=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return error_json(400, "malformed JSON", [{"field": "", "message": "the body is not "
                                                   "valid JSON"}])
    details = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
               for e in errors[:50]]
    return error_json(422, "validation failed", details)


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    if request.content_length is not None and request.content_length > BODY_CAP:
        raise ApiError(413, "request body larger than 1 MB")
    buf = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        buf += chunk
        if len(buf) > BODY_CAP:
            raise ApiError(413, "request body larger than 1 MB")
    if not buf.strip():
        raise ApiError(400, "malformed JSON", [{"field": "", "message": "empty body"}])
    return model.model_validate_json(bytes(buf))


def _key(request: web.Request, name: str) -> str:
    try:
        return m.KEY_ADAPTER.validate_python(request.match_info[name])
    except ValidationError:
        raise _field(name, "must match " + m.KEY_PATTERN) from None


def _audit(action: str, entity: str, entity_id: Any, detail: dict) -> AuditLog:
    return AuditLog(actor_ref="api", platform="api", action=action, entity=entity,
                    entity_id=str(entity_id), detail=detail)


async def _customer(db, ref: str) -> Customer:
    found = (await db.exec(select(Customer).where(Customer.external_id == ref))).first()
    if found is not None:
        return found
    named = (await db.exec(select(Customer).where(Customer.name == ref).limit(2))).all()
    if len(named) > 1:
        raise _field("customer", "more than one customer has this name: use its external id")
    if not named:
        raise _field("customer", "unknown customer")
    return named[0]


async def _user(db, name: str) -> User:
    users = (await db.exec(select(User).where(User.name == name, User.active == True)  # noqa: E712
                           .limit(2))).all()
    if len(users) != 1:
        raise _field("owner", "unknown user" if not users else "more than one user has this "
                     "name")
    return users[0]


async def _names(db, model, ids) -> dict[int, Any]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return {r.id: r for r in (await db.exec(select(model).where(model.id.in_(ids)))).all()}


# -- customers ---------------------------------------------------------------------------------
async def _customer_out(db, cust: Customer) -> m.CustomerOut:
    owner = await db.get(User, cust.owner_id) if cust.owner_id else None
    return m.CustomerOut(external_id=cust.external_id or "", name=cust.name,
                         short_name=cust.short_name, region=cust.region,
                         owner=owner.name if owner else None, lat=cust.lat, lng=cust.lng,
                         coord_system=cust.coord_system or None, address=cust.address,
                         credit_code=cust.credit_code, created_at=cust.created_at)


@endpoint
async def put_customer(request: web.Request) -> web.StreamResponse:
    key = _key(request, "external_id")
    body: m.CustomerIn = await _body(request, m.CustomerIn)
    async with request.app[API_CTX].session() as db:
        owner_id = (await _user(db, body.owner)).id if body.owner else None
        cust = (await db.exec(select(Customer).where(Customer.external_id == key))).first()
        named = (await db.exec(select(Customer).where(Customer.name == body.name))).first()
        if cust is None and named is not None and named.external_id is None:
            cust = named  # a customer filed in chat before the ERP knew it: it takes the key
            cust.external_id = key
        elif named is not None and (cust is None or named.id != cust.id):
            raise _field("name", "another customer has this name")
        new: dict[str, Any] = {"name": body.name, "short_name": body.short_name,
                               "region": body.region, "address": body.address,
                               "credit_code": body.credit_code}
        if owner_id:
            new["owner_id"] = owner_id
        if body.lat is not None:
            new.update(lat=body.lat, lng=body.lng, coord_system=body.coord_system)
        if cust is None:
            cust = Customer(external_id=key, created_at=datetime.now(UTC), **new)
            changes: dict[str, Any] = {"created": True}
            status = 201
        else:
            changes = _apply(cust, new)
            status = 200
        return await _saved(db, cust, status, _customer_out, "api.customer.upsert", "customer",
                            {"external_id": key, "changes": changes})


@endpoint
async def get_customer(request: web.Request) -> web.StreamResponse:
    return await _read(request, Customer, "external_id", _customer_out, "no such customer")


# -- deals -------------------------------------------------------------------------------------
async def _deal_out(db, deal: Deal) -> m.DealOut:
    cust = await db.get(Customer, deal.customer_id)
    owner = await db.get(User, deal.owner_id) if deal.owner_id else None
    return m.DealOut(external_id=deal.external_id or "", customer=cust.name,
                     customer_external_id=cust.external_id, title=deal.title, stage=deal.stage,
                     amount=deal.amount, owner=owner.name if owner else None,
                     last_activity_at=deal.last_activity_at, created_at=deal.created_at)


def _apply(row: Any, new: dict[str, Any]) -> dict[str, list[str]]:
    """Set ``new`` on ``row``; what changed as {field: [old, new]} for the audit row."""
    changes = {k: [str(getattr(row, k)), str(v)] for k, v in new.items()
               if getattr(row, k) != v}
    for k, v in new.items():
        setattr(row, k, v)
    return changes


def _out(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status,
                        content_type="application/json")


Render = Callable[[Any, Any], Awaitable[BaseModel]]


async def _saved(db, row, status: int, render: Render, action: str, entity: str,
                 detail: dict) -> web.Response:
    """An upserted deal or invoice and its audit row in one commit; the answer is the row as
    the GET returns it."""
    db.add(row)
    await db.flush()  # a new row's id, for the audit row
    db.add(_audit(action, entity, row.id, detail))
    await db.commit()
    return _out(await render(db, row), status)


async def _read(request: web.Request, model, key_name: str, render: Render, missing: str
                ) -> web.Response:
    """GET one row by its natural key (the path parameter and the column share the name)."""
    key = _key(request, key_name)
    async with request.app[API_CTX].session() as db:
        row = (await db.exec(select(model).where(getattr(model, key_name) == key))).first()
        if row is None:
            raise ApiError(404, missing)
        return _out(await render(db, row))


@endpoint
async def put_deal(request: web.Request) -> web.StreamResponse:
    key = _key(request, "external_id")
    body: m.DealIn = await _body(request, m.DealIn)
    ctx = request.app[API_CTX]
    now = datetime.now(UTC)
    async with ctx.session() as db:
        cust = await _customer(db, body.customer)
        owner_id = (await _user(db, body.owner)).id if body.owner else None
        deal = (await db.exec(select(Deal).where(Deal.external_id == key))).first()
        if deal is None:
            deal = Deal(external_id=key, customer_id=cust.id, title=body.title)
            await change_deal(db, deal, who="api", source="api", at=now, stage=body.stage,
                              amount=body.amount, owner_id=owner_id or cust.owner_id,
                              last_activity_at=now, created_at=now)
            changes = {"created": True}
            status = 201
        else:
            new = {"customer_id": cust.id, "title": body.title, "stage": body.stage,
                   "amount": body.amount}
            if owner_id:
                new["owner_id"] = owner_id
            changes = await change_deal(db, deal, who="api", source="api", at=now, **new)
            if "stage" in changes or "amount" in changes:
                deal.last_activity_at = now
            status = 200
        return await _saved(db, deal, status, _deal_out, "api.deal.upsert", "deal",
                            {"external_id": key, "changes": changes})


@endpoint
async def get_deal(request: web.Request) -> web.StreamResponse:
    return await _read(request, Deal, "external_id", _deal_out, "no such deal")


# -- invoices ----------------------------------------------------------------------------------
async def _invoice_out(db, inv: Invoice) -> m.InvoiceOut:
    cust = await db.get(Customer, inv.customer_id)
    deal = await db.get(Deal, inv.deal_id) if inv.deal_id else None
    return m.InvoiceOut(number=inv.number, customer=cust.name,
                        customer_external_id=cust.external_id, amount=inv.amount,
                        paid_amount=inv.paid_amount,
                        outstanding=round(max(inv.amount - inv.paid_amount, 0), 2),
                        due_date=inv.due_date, deal=deal.title if deal else None,
                        deal_external_id=deal.external_id if deal else None,
                        paid_at=inv.paid_at)


async def _deal_of(db, customer: Customer, ref: str) -> Deal:
    d = (await db.exec(select(Deal).where(Deal.external_id == ref,
                                          Deal.customer_id == customer.id))).first()
    if d is None:
        d = (await db.exec(select(Deal).where(Deal.title == ref,
                                              Deal.customer_id == customer.id))).first()
    if d is None:
        raise _field("deal", "no such deal for this customer")
    return d


def _settle(inv: Invoice, at: datetime) -> None:
    """Fully paid → paid_at (kept if already set); not fully paid → open again."""
    if inv.paid_amount >= inv.amount - 0.005:
        inv.paid_at = inv.paid_at or at
    else:
        inv.paid_at = None


@endpoint
async def put_invoice(request: web.Request) -> web.StreamResponse:
    number = _key(request, "number")
    body: m.InvoiceIn = await _body(request, m.InvoiceIn)
    now = datetime.now(UTC)
    async with request.app[API_CTX].session() as db:
        cust = await _customer(db, body.customer)
        deal_id = (await _deal_of(db, cust, body.deal)).id if body.deal else None
        inv = (await db.exec(select(Invoice).where(Invoice.number == number))).first()
        if inv is None:
            inv = Invoice(number=number, customer_id=cust.id, deal_id=deal_id,
                          amount=body.amount, paid_amount=body.paid_amount or 0,
                          due_date=body.due_date)
            changes: dict[str, Any] = {"created": True}
            status = 201
        else:
            new = {"customer_id": cust.id, "deal_id": deal_id, "amount": body.amount,
                   "due_date": body.due_date}
            if body.paid_amount is not None:
                new["paid_amount"] = body.paid_amount
            if new.get("paid_amount", inv.paid_amount) > body.amount:
                raise _field("amount", "less than what is already paid")
            changes = _apply(inv, new)
            status = 200
        _settle(inv, now)
        return await _saved(db, inv, status, _invoice_out, "api.invoice.upsert", "invoice",
                            {"number": number, "changes": changes})


@endpoint
async def get_invoice(request: web.Request) -> web.StreamResponse:
    return await _read(request, Invoice, "number", _invoice_out, "no such invoice")


# -- payments ----------------------------------------------------------------------------------
@endpoint
async def post_payment(request: web.Request) -> web.StreamResponse:
    body: m.PaymentIn = await _body(request, m.PaymentIn)
    async with request.app[API_CTX].session() as db:
        inv = (await db.exec(select(Invoice).where(Invoice.number == body.invoice))).first()
        if inv is None:
            raise _field("invoice", "unknown invoice")
        if body.reference:
            old = (await db.exec(select(Payment).where(Payment.reference == body.reference))
                   ).first()
            if old is not None:
                if old.invoice_id != inv.id:
                    raise ApiError(409, "this reference was recorded for another invoice")
                return _out(m.PaymentOut(id=old.id, reference=old.reference, amount=old.amount,
                                         paid_at=old.paid_at, replayed=True,
                                         invoice=await _invoice_out(db, inv)))
        # one atomic UPDATE: two payments at once can neither lose one nor overpay
        t = Invoice.__table__
        res = await db.exec(update(t).where(
            t.c.id == inv.id, t.c.paid_amount + body.amount <= t.c.amount + 0.005).values(
            paid_amount=t.c.paid_amount + body.amount))
        if res.rowcount != 1:
            raise _field("amount", f"exceeds the outstanding "
                         f"{max(inv.amount - inv.paid_amount, 0):.2f}")
        await db.refresh(inv)
        _settle(inv, body.paid_at)
        pay = Payment(invoice_id=inv.id, amount=body.amount, paid_at=body.paid_at,
                      reference=body.reference)
        db.add(inv)
        db.add(pay)
        await db.flush()
        db.add(_audit("api.payment", "invoice", inv.id, {
            "number": inv.number, "payment_id": pay.id, "amount": body.amount,
            "reference": body.reference}))
        await db.commit()
        return _out(m.PaymentOut(id=pay.id, reference=pay.reference, amount=pay.amount,
                                 paid_at=pay.paid_at, replayed=False,
                                 invoice=await _invoice_out(db, inv)), 201)


_PLUS_LOST = re.compile(r".*\d \d\d:\d\d")


# -- visits ------------------------------------------------------------------------------------
def _query(request: web.Request) -> tuple[datetime | None, int, int]:
    q = request.query
    since = None
    if q.get("since"):
        raw_since = q["since"]
        if _PLUS_LOST.fullmatch(raw_since):  # an unencoded "+08:00" arrives as " 08:00"
            raw_since = raw_since[:-6] + "+" + raw_since[-5:]
        try:
            since = m.TIME_ADAPTER.validate_python(raw_since, strict=False)
        except ValidationError:
            raise _field("since", "an ISO 8601 date-time with an offset, e.g. "
                         "2026-12-01T00:00:00+08:00") from None
    cursor = q.get("cursor", "0") or "0"
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 18:
        raise _field("cursor", "use the next_cursor of the previous page")
    raw = q.get("limit", "100")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise _field("limit", "a whole number from 1 to 500")
    return since, int(cursor), int(raw)


@endpoint
async def list_visits(request: web.Request) -> web.StreamResponse:
    since, cursor, limit = _query(request)
    async with request.app[API_CTX].session() as db:
        q = select(Visit).where(Visit.id > cursor).order_by(Visit.id).limit(limit + 1)
        if since is not None:
            q = q.where(Visit.created_at >= since)
        rows = list((await db.exec(q)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        users = await _names(db, User, (v.user_id for v in rows))
        custs = await _names(db, Customer, (v.customer_id for v in rows))
        deals = await _names(db, Deal, (v.deal_id for v in rows))
    items = []
    for v in rows:
        c, d, u = custs.get(v.customer_id), deals.get(v.deal_id), users.get(v.user_id)
        items.append(m.VisitOut(
            id=v.id, user=u.name if u else None, customer=c.name if c else None,
            customer_external_id=c.external_id if c else None, deal=d.title if d else None,
            deal_external_id=d.external_id if d else None, source=v.source, summary=v.summary,
            follow_up_on=v.follow_up_on, created_at=v.created_at))
    return _out(m.VisitPage(items=items, next_cursor=str(rows[-1].id) if more else None))


# -- the document ------------------------------------------------------------------------------
async def openapi_json(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[OPENAPI])


async def docs(request: web.Request) -> web.StreamResponse:
    """A plain listing (no CDN, no script): the JSON document is the real reference."""
    doc = request.app[OPENAPI]
    items = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            items.append(f"<li><code>{method.upper()} {path}</code> — {op['summary']}</li>")
    page = ("<!doctype html><html lang=en><meta charset=utf-8><title>FieldBot API</title>"
            "<h1>FieldBot REST API v1</h1><p>Send <code>Authorization: Bearer &lt;token&gt;"
            "</code>. Machine-readable: <a href=openapi.json>openapi.json</a>.</p><ul>"
            + "".join(items) + "</ul></html>")
    return web.Response(text=page, content_type="text/html",
                        headers={"Content-Security-Policy": "default-src 'none'"})


OPENAPI = web.AppKey("fieldbot_openapi", dict)


def mount(app: web.Application, ctx: WebCtx) -> None:
    app[API_CTX] = ctx
    app[OPENAPI] = json.loads(json.dumps(document()))
    r = app.router
    r.add_put(f"{BASE}/customers/{{external_id}}", put_customer)
    r.add_get(f"{BASE}/customers/{{external_id}}", get_customer, allow_head=False)
    r.add_put(f"{BASE}/deals/{{external_id}}", put_deal)
    r.add_get(f"{BASE}/deals/{{external_id}}", get_deal, allow_head=False)
    r.add_put(f"{BASE}/invoices/{{number}}", put_invoice)
    r.add_get(f"{BASE}/invoices/{{number}}", get_invoice, allow_head=False)
    r.add_post(f"{BASE}/payments", post_payment)
    r.add_get(f"{BASE}/visits", list_visits, allow_head=False)
    r.add_get(f"{BASE}/openapi.json", openapi_json)
    r.add_get(f"{BASE}/docs", docs)
    from webapp import api_targets  # imports this module: mounted late

    api_targets.mount(app)
