"""Rep pages, the read side: my visits, my customers (and one customer's detail), my deals by
stage (and the rep's forecast call on one: category and expected close, through
``sales.deal_forecast``), my open follow-ups (and marking one done). A rep sees their own
rows, a manager their team's (``webapp.scope``); the write-heavy pages live in ``rep_sync``
and ``rep_visit``.

The small helpers at the top (``audit``, ``scoped``, ``local_today``) are shared by those two.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web
from sqlmodel import or_, select

from config.alert_rules import AlertRules, load_alert_rules
from handlers.visits import LOCAL_TZ, OPEN_STAGES, SOURCE_LABEL, evidence_summary
from sales.deal_forecast import update_forecast
from sales.forecast import CATEGORIES, CATEGORY_NAMES
from storage.alert_models import CustomerHealth
from storage.models import (
    AuditLog,
    Contact,
    Customer,
    Deal,
    Invoice,
    Task,
    User,
    Visit,
)
from storage.rules import current_alert_rules
from webapp.auth import require
from webapp.core import current_user, web_ctx
from webapp.render import error_page, render
from webapp.scope import may_see, visible_user_ids

routes = web.RouteTableDef()

STAGES = ("lead", "qualified", "proposal", "negotiation", "won", "lost")
STAGE_LABEL = {"lead": "线索", "qualified": "已确认", "proposal": "方案", "negotiation": "谈判",
               "won": "赢单", "lost": "输单"}
LIST_LIMIT = 200
NOT_CUSTOMER = ("没有这个客户 / No such customer.", "这不是你的客户 / This customer is not yours.")
NOT_DEAL = ("没有这个商机 / No such deal.",
            "只有负责人、其上级经理或管理员可以修改 / Only the owner, their manager or an admin "
            "may change this deal.")
FORECAST_FLASH = {"1": "预测已保存 ✓ / Forecast saved", "same": "没有变化 / Nothing changed",
                  "closed": "商机已结束，不再预测 / The deal is closed: not forecast any more"}
NOT_TASK = ("没有这个跟进任务 / No such follow-up.",
            "这不是你的任务 / This follow-up is not yours.")


def small_int(value: Any) -> int | None:
    """An id from a URL or a form: digits that fit a database integer, else ``None`` (a huge
    number would overflow the driver: a 404, not a 500)."""
    text = str(value or "").strip()
    return int(text) if text.isdigit() and len(text) <= 12 else None


async def visible_row(db: Any, request: web.Request, model: Any, owner: str,
                      words: tuple[str, str]) -> tuple[Any, web.Response | None]:
    """(the row the URL's ``{id}`` names, None) when this user may see it — its ``owner``
    column (an owner/user id) in their scope — else (None, the 404 or 403 page to return);
    ``words``: what those pages say (no such row, not yours)."""
    rid = small_int(request.match_info["id"])
    row = await db.get(model, rid) if rid is not None else None
    if row is None:
        return None, error_page(request, 404, words[0])
    if not may_see(await visible_user_ids(db, current_user(request)), getattr(row, owner)):
        return None, error_page(request, 403, words[1])
    return row, None


def local_today() -> date:
    return datetime.now(UTC).astimezone(LOCAL_TZ).date()


def audit(db: Any, user: User, action: str, entity: str, entity_id: Any, **detail: Any) -> None:
    """An audit row for a change made from a page (``via: web`` tells it from the chat)."""
    db.add(AuditLog(actor_id=user.id, actor_ref=f"web:{user.id}", action=action,
                    entity=entity, entity_id=str(entity_id), detail={"via": "web", **detail}))


def scoped(q: Any, column: Any, scope: set[int] | None) -> Any:
    """``q`` limited to rows whose ``column`` (an owner/user id) is in ``scope``."""
    return q if scope is None else q.where(column.in_(sorted(scope)))


async def alert_rules(db: Any, settings: Any) -> AlertRules:
    """The rules the alert jobs use (defaults ← TOML ← the admin's latest row): the deals page
    flags stale deals with the same thresholds as the stale alert."""
    try:
        return await current_alert_rules(db, settings.rules)
    except ValueError:  # a broken rules row must not take the deals page down
        return load_alert_rules((settings.rules or {}).get("alerts") or {})


# -- my visits -------------------------------------------------------------------------------
@routes.get("/app/visits")
@require()
async def visits_page(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    async with web_ctx(request).session() as db:
        scope = await visible_user_ids(db, user)
        q = (select(Visit, Customer.name, User.name)
             .join(Customer, Customer.id == Visit.customer_id, isouter=True)
             .join(User, User.id == Visit.user_id, isouter=True)
             .order_by(Visit.created_at.desc(), Visit.id.desc()).limit(LIST_LIMIT))
        rows = (await db.exec(scoped(q, Visit.user_id, scope))).all()
    visits = [{"v": v, "customer": cname or "（未知客户）", "by": uname or "",
               "source": SOURCE_LABEL.get(v.source, v.source), "evidence": evidence_summary(v)}
              for v, cname, uname in rows]
    saved = request.query.get("saved")
    return render(request, "rep_visits.html", visits=visits,
                  flash="已保存 ✓ / Saved" if saved == "1" else (
                      "已处理 / Already saved" if saved == "dup" else ""))


# -- my customers ----------------------------------------------------------------------------
@routes.get("/app/customers")
@require()
async def customers_page(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    term = request.query.get("q", "").strip()[:60]
    async with web_ctx(request).session() as db:
        scope = await visible_user_ids(db, user)
        q = (select(Customer, CustomerHealth.grade, CustomerHealth.score, User.name)
             .join(CustomerHealth, CustomerHealth.customer_id == Customer.id, isouter=True)
             .join(User, User.id == Customer.owner_id, isouter=True)
             .order_by(Customer.last_activity_at.desc(), Customer.id).limit(LIST_LIMIT))
        if term:
            like = f"%{term}%"
            q = q.where(or_(Customer.name.like(like), Customer.short_name.like(like)))
        rows = (await db.exec(scoped(q, Customer.owner_id, scope))).all()
    customers = [{"c": c, "grade": grade or "", "score": score, "owner": owner or ""}
                 for c, grade, score, owner in rows]
    return render(request, "rep_customers.html", customers=customers, q=term)


@routes.get("/app/customers/{id}")
@require()
async def customer_page(request: web.Request) -> web.StreamResponse:
    async with web_ctx(request).session() as db:
        customer, refused = await visible_row(db, request, Customer, "owner_id", NOT_CUSTOMER)
        if refused is not None:
            return refused
        cid = customer.id
        owner = await db.get(User, customer.owner_id) if customer.owner_id else None
        health = await db.get(CustomerHealth, cid)
        contacts = (await db.exec(select(Contact).where(Contact.customer_id == cid)
                                  .order_by(Contact.id))).all()
        deals = (await db.exec(select(Deal).where(Deal.customer_id == cid)
                               .order_by(Deal.last_activity_at.desc()))).all()
        invoices = (await db.exec(select(Invoice).where(Invoice.customer_id == cid)
                                  .order_by(Invoice.due_date.desc()))).all()
        visits = (await db.exec(select(Visit, User.name)
                                .join(User, User.id == Visit.user_id, isouter=True)
                                .where(Visit.customer_id == cid)
                                .order_by(Visit.created_at.desc()).limit(20))).all()
    today = local_today()
    return render(request, "rep_customer.html", c=customer, owner=owner, health=health,
                  contacts=contacts, deals=deals, stage_label=STAGE_LABEL, today=today,
                  invoices=invoices, source_label=SOURCE_LABEL,
                  visits=[(v, by or "", evidence_summary(v)) for v, by in visits])


# -- my deals --------------------------------------------------------------------------------
@routes.get("/app/deals")
@require()
async def deals_page(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    ctx = web_ctx(request)
    async with ctx.session() as db:
        scope = await visible_user_ids(db, user)
        rules = await alert_rules(db, ctx.settings)
        q = (select(Deal, Customer.name, User.name)
             .join(Customer, Customer.id == Deal.customer_id)
             .join(User, User.id == Deal.owner_id, isouter=True)
             .order_by(Deal.last_activity_at).limit(LIST_LIMIT * 5))
        rows = (await db.exec(scoped(q, Deal.owner_id, scope))).all()
    now = datetime.now(UTC)
    by_stage: dict[str, list[dict[str, Any]]] = {s: [] for s in STAGES}
    for deal, cname, owner in rows:
        idle = max(0, (now - deal.last_activity_at).days)
        flag = ""
        if deal.stage in OPEN_STAGES:
            t = rules.stale.thresholds(deal.stage)
            flag = "bad" if idle >= t.red_days else ("warn" if idle >= t.yellow_days else "")
        by_stage.setdefault(deal.stage, []).append(
            {"d": deal, "customer": cname, "owner": owner or "", "idle": idle, "flag": flag})
    groups = [(s, STAGE_LABEL.get(s, s), items, sum(i["d"].amount for i in items))
              for s, items in by_stage.items() if items]
    saved = request.query.get("saved", "")
    return render(request, "rep_deals.html", groups=groups, open_stages=OPEN_STAGES,
                  categories=[(c, CATEGORY_NAMES[c]) for c in CATEGORIES],
                  stale=sum(1 for items in by_stage.values() for i in items if i["flag"]),
                  flash=FORECAST_FLASH.get(saved, ""),
                  flash_kind="error" if saved == "closed" else "ok")


def _form_date(value: Any) -> tuple[bool, date | None]:
    """(valid, the date) of a date input: blank is valid and means "leave as it is"."""
    text = str(value or "").strip()
    if not text:
        return True, None
    try:
        return True, date.fromisoformat(text)
    except ValueError:
        return False, None


@routes.post("/app/deals/{id}/forecast")
@require()
async def deal_forecast(request: web.Request) -> web.StreamResponse:
    """The rep's call on one open deal: forecast category and expected close date. Who may
    is ``sales.deal_forecast``'s rule (owner, a manager above the owner, admin)."""
    user = current_user(request)
    form = await request.post()
    category = str(form.get("category") or "").strip() or None
    ok, when = _form_date(form.get("expected_close"))
    if (category is not None and category not in CATEGORIES) or not ok:
        return error_page(request, 400, "类别或日期无效 / Bad category or date.")
    did = small_int(request.match_info["id"])
    async with web_ctx(request).session() as db:
        res = await update_forecast(db, did, user, category=category, expected_close=when,
                                    source="web")
        if res.status == "not_found":
            return error_page(request, 404, NOT_DEAL[0])
        if res.status == "refused":
            return error_page(request, 403, NOT_DEAL[1])
        if res.status == "closed":
            raise web.HTTPFound(f"/app/deals?saved=closed#deal-{res.deal.id}")
        if res.changes:
            audit(db, user, "deal.forecast", "deal", res.deal.id, owner_id=res.deal.owner_id,
                  **res.audit_detail())
            await db.commit()
    raise web.HTTPFound(f"/app/deals?saved={'1' if res.changes else 'same'}#deal-{res.deal.id}")


# -- my follow-ups ---------------------------------------------------------------------------
@routes.get("/app/followups")
@require()
async def followups_page(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    async with web_ctx(request).session() as db:
        scope = await visible_user_ids(db, user)
        q = (select(Task, Customer.name, User.name)
             .join(Customer, Customer.id == Task.customer_id, isouter=True)
             .join(User, User.id == Task.user_id, isouter=True)
             .where(Task.done == False)  # noqa: E712
             .order_by(Task.due_on.is_(None), Task.due_on, Task.id).limit(LIST_LIMIT))
        rows = (await db.exec(scoped(q, Task.user_id, scope))).all()
    done = request.query.get("done")
    return render(request, "rep_followups.html", today=local_today(),
                  tasks=[(t, cname or "", by or "") for t, cname, by in rows],
                  flash="已完成 ✓ / Done" if done == "1" else (
                      "已处理 / Already done" if done == "dup" else ""))


@routes.post("/app/followups/{id}/done")
@require()
async def followup_done(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    async with web_ctx(request).session() as db:
        task, refused = await visible_row(db, request, Task, "user_id", NOT_TASK)
        if refused is not None:
            return refused
        if task.done:
            raise web.HTTPFound("/app/followups?done=dup")
        task.done = True
        db.add(task)
        audit(db, user, "task.done", "task", task.id, customer_id=task.customer_id,
              owner_id=task.user_id)
        await db.commit()
    raise web.HTTPFound("/app/followups?done=1")
