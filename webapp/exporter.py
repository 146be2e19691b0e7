"""Export the same columns the importer reads (so export → import into an empty database
recreates the rows), limited to what the user may see (``webapp.scope``), plus visits.

Times are written as ISO 8601 in UTC with the offset, dates as ``YYYY-MM-DD``; lists (aliases,
tags) ``;``-separated — exactly what ``webapp.cells`` parses back. Text that Excel would run
as a formula (``=…``, ``-…``, ``@…``) is written with a leading ``'`` by ``webapp.tabular``,
and the importer takes exactly that ``'`` off again.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select

from storage.models import Contact, Customer, CustomerAlias, Deal, Invoice, User, Visit
from webapp.importer import KINDS

VISIT_COLUMNS = ("id", "created_at", "user", "customer", "deal", "source", "summary",
                 "follow_up_on")
EXPORT_KINDS = (*KINDS, "visits")


def _num(x: float | None) -> Any:
    if x is None:
        return ""
    return int(x) if float(x).is_integer() else x


def _iso(v: Any) -> str:
    return v.isoformat() if v is not None else ""


def _position(r: Any) -> list[Any]:
    if r.lat is None or r.lng is None:
        return ["", "", ""]
    return [r.lat, r.lng, r.coord_system or "wgs84"]


async def export_rows(conn, kind: str, scope: set[int] | None
                      ) -> tuple[tuple[str, ...], list[list[Any]]]:
    """(header, rows) for ``kind``; ``scope``: the owner/user ids visible (None = all)."""
    users = dict((await conn.execute(select(User.id, User.name))).all())
    c = Customer.__table__.c
    cq = select(c.id, c.name, c.short_name, c.region, c.owner_id, c.tags, c.strategic_rating,
                c.external_id, c.lat, c.lng, c.coord_system, c.address,
                c.credit_code).order_by(c.id)
    if scope is not None:
        cq = cq.where(c.owner_id.in_(list(scope)))
    customers = (await conn.execute(cq)).all()
    cname = {r.id: r.name for r in customers}
    if kind == "customers":
        aliases: dict[int, list[str]] = defaultdict(list)
        a = CustomerAlias.__table__.c
        for cid, alias in (await conn.execute(select(a.customer_id, a.alias).order_by(a.id))):
            aliases[cid].append(alias)
        return KINDS[kind].columns, [
            [r.name, r.short_name, r.region, users.get(r.owner_id, ""),
             ";".join(aliases.get(r.id, ())), ";".join(r.tags or ()), r.strategic_rating,
             r.external_id or "", *_position(r), r.address, r.credit_code]
            for r in customers]
    if kind == "positions":
        return KINDS[kind].columns, [[r.name, *_position(r)] for r in customers
                                     if r.lat is not None]
    if kind == "contacts":
        k = Contact.__table__.c
        rows = (await conn.execute(select(k.customer_id, k.name, k.title, k.phone)
                                   .order_by(k.id))).all()
        return KINDS[kind].columns, [[cname[r.customer_id], r.name, r.title, r.phone]
                                     for r in rows if r.customer_id in cname]
    d = Deal.__table__.c
    deal_rows = (await conn.execute(select(d.id, d.customer_id, d.title, d.stage, d.amount,
                                           d.owner_id, d.last_activity_at, d.external_id)
                                    .order_by(d.id))).all()
    if kind == "deals":
        return KINDS[kind].columns, [
            [cname[r.customer_id], r.title, r.stage, _num(r.amount), users.get(r.owner_id, ""),
             _iso(r.last_activity_at), r.external_id or ""]
            for r in deal_rows if r.customer_id in cname
            and (scope is None or r.owner_id in scope)]
    deal_title = {r.id: r.title for r in deal_rows}
    if kind == "invoices":
        i = Invoice.__table__.c
        rows = (await conn.execute(select(i.customer_id, i.number, i.amount, i.paid_amount,
                                          i.due_date, i.deal_id).order_by(i.id))).all()
        return KINDS[kind].columns, [
            [cname[r.customer_id], r.number, _num(r.amount), _num(r.paid_amount),
             _iso(r.due_date), deal_title.get(r.deal_id, "")]
            for r in rows if r.customer_id in cname]
    if kind == "visits":
        v = Visit.__table__.c
        vq = select(v.id, v.created_at, v.user_id, v.customer_id, v.deal_id, v.source,
                    v.summary, v.follow_up_on).order_by(v.id)
        if scope is not None:
            vq = vq.where(v.user_id.in_(list(scope)))
        names = dict((await conn.execute(select(c.id, c.name))).all())
        return VISIT_COLUMNS, [
            [r.id, _iso(r.created_at), users.get(r.user_id, ""), names.get(r.customer_id, ""),
             deal_title.get(r.deal_id, ""), r.source, r.summary, _iso(r.follow_up_on)]
            for r in (await conn.execute(vq)).all()]
    raise ValueError(f"unknown kind {kind}")
