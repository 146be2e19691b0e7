"""Approver pages: pending approvals with the same actions as the cards (one state machine,
``storage.approvals``; the cards are updated through the same notifier), and history.

A decision on the page is the tap's twin: ``sm.decide`` with a ``web`` actor, then
``approval_cards.Notifier.after_decision`` writing outbox rows in the same transaction (the
approver's own card becomes "已同意 by …" in place, the next approver gets a card, the requester
is told), then the outbox is woken. A decision taken in the chat shows here on the next load.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlmodel import col, or_, select

from bot.event import utcnow
from cards import pack_action
from config.rules import ApprovalRules
from handlers import approval_cards as ac
from handlers.approvals import reject_reason, rules_of
from jobs.approvals import OutboxSink
from storage import approvals as sm
from storage.models import ApprovalRequest, ApprovalStep, AuditLog, User
from webapp.auth import require
from webapp.core import current_user, web_ctx
from webapp.render import error_page, render

routes = web.RouteTableDef()
PAGE = 20
SEES_ALL = ("admin", "vp")  # may open any request (read only unless it is their step)
# ?flash=… after a decision (fixed texts: nothing from the query reaches the page verbatim)
FLASH: dict[str, tuple[str, str]] = {
    "approved": ("已同意 ✓ / approved", "ok"),
    "rejected": ("已驳回 / rejected", "ok"),
    "stale": ("已处理 / already handled — nothing changed", "warn"),
    "reason": ("请选择或填写驳回原因 / choose or write a reason", "error"),
}


# a step's state and role as the pages say them (the cards use the same role labels)
STEP_LABEL = {"waiting": "等待 / waiting", "pending": "待审批 / pending",
              "approved": "已同意 / approved", "rejected": "已驳回 / rejected",
              "skipped": "跳过 / skipped"}


def _flash(request: web.Request) -> dict[str, str]:
    msg, kind = FLASH.get(request.query.get("flash", ""), ("", ""))
    return {"flash": msg, "flash_kind": kind, "step_label": STEP_LABEL,
            "role_label": ac.ROLE_LABEL}


def _request_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPNotFound()
    return int(raw)


async def _rules(db, ctx, v: ac.View | None) -> ApprovalRules:
    current = await sm.current_rules(db, (ctx.settings.rules or {}).get("approvals"))
    return rules_of(v, current) if v is not None else current


async def _involved(db, user: User, v: ac.View) -> bool:
    """Requester, a step's approver or decider, an active delegate of a step's approver, or
    someone who sees everything."""
    if user.role in SEES_ALL or v.request.requester_id == user.id:
        return True
    if any(user.id in (s.approver_id, s.decided_by) for s in v.steps):
        return True
    delegators = set(await sm.delegators_of(db, user.id, utcnow()))
    return any(s.approver_id in delegators for s in v.steps)


def _row(v: ac.View, step: ApprovalStep | None, rules: ApprovalRules,
         me: int) -> dict[str, Any]:
    """What a list row shows about one request."""
    return {"v": v, "step": step, "state": ac.STATE_LABEL.get(v.request.state, v.request.state),
            "reasons": [(str(i), t) for i, t in enumerate(rules.reject_reasons)],
            "delegate": step is not None and step.approver_id not in (None, me)}


@routes.get("/app/approvals")
@require()
async def approvals_page(request: web.Request) -> web.StreamResponse:
    ctx, user = web_ctx(request), current_user(request)
    assert user is not None
    async with ctx.session() as db:
        pending, mine = [], []
        for req, step in await sm.pending_for(db, user.id, utcnow()):
            v = await ac.load_view(db, req.id)
            if v is not None:
                pending.append(_row(v, step, await _rules(db, ctx, v), user.id))
        for req in await sm.requests_of(db, user.id, limit=PAGE):
            v = await ac.load_view(db, req.id)
            if v is not None:
                mine.append(_row(v, v.current(), await _rules(db, ctx, v), user.id))
        done = []
        for step in (await db.exec(select(ApprovalStep).where(ApprovalStep.decided_by == user.id)
                                   .order_by(col(ApprovalStep.decided_at).desc(),
                                             col(ApprovalStep.id).desc()).limit(10))).all():
            v = await ac.load_view(db, step.request_id)
            if v is not None:
                done.append({"v": v, "step": step,
                             "state": ac.STATE_LABEL.get(v.request.state, v.request.state)})
    return render(request, "approvals.html", pending=pending, mine=mine, done=done,
                  **_flash(request))


@routes.get("/app/approvals/history")
@require()
async def history_page(request: web.Request) -> web.StreamResponse:
    ctx, user = web_ctx(request), current_user(request)
    assert user is not None
    raw = request.query.get("page", "1")
    page = int(raw) if raw.isdigit() and 0 < int(raw) < 10_000 else 1
    acted = select(ApprovalStep.request_id).where(
        or_(ApprovalStep.decided_by == user.id, ApprovalStep.approver_id == user.id))
    q = (select(ApprovalRequest)
         .where(col(ApprovalRequest.state).in_(sm.FINAL),
                or_(ApprovalRequest.requester_id == user.id,
                    col(ApprovalRequest.id).in_(acted)))
         .order_by(col(ApprovalRequest.id).desc()).offset((page - 1) * PAGE).limit(PAGE + 1))
    async with ctx.session() as db:
        reqs = list((await db.exec(q)).all())
        rows = []
        for req in reqs[:PAGE]:
            v = await ac.load_view(db, req.id)
            if v is not None:
                last = next((s for s in reversed(v.steps) if s.decided_at), None)
                rows.append({"v": v, "last": last,
                             "state": ac.STATE_LABEL.get(req.state, req.state)})
    return render(request, "approvals_history.html", rows=rows, page=page,
                  more=len(reqs) > PAGE, **_flash(request))


@routes.get("/app/approvals/{id}")
@require()
async def detail_page(request: web.Request) -> web.StreamResponse:
    ctx, user = web_ctx(request), current_user(request)
    assert user is not None
    rid = _request_id(request)
    async with ctx.session() as db:
        v = await ac.load_view(db, rid)
        if v is None or (v.request.state == "draft" and v.request.requester_id != user.id):
            raise web.HTTPNotFound()
        if not await _involved(db, user, v):
            return error_page(request, 403, "你无权查看这个申请 / You are not involved in this "
                                            "request.")
        rules = await _rules(db, ctx, v)
        audit = list((await db.exec(select(AuditLog).where(
            AuditLog.entity == "approval_request", AuditLog.entity_id == str(rid))
            .order_by(col(AuditLog.at), col(AuditLog.id)))).all())
        names = {**v.users, **await sm.users_by_id(db, [a.actor_id for a in audit])}
        step = v.current()
        mine = step is not None and step.approver_id is not None and (
            await sm.may_act(db, step, user.id, utcnow())) and user.id != v.request.requester_id
    return render(request, "approvals_detail.html", row=_row(v, step, rules, user.id),
                  audit=audit, names={k: u.name for k, u in names.items()},
                  can_act=mine, fields=ac.fields(v), **_flash(request))


def _back(request: web.Request, form, rid: int) -> str:
    nxt = str(form.get("next") or "")
    return nxt if nxt in ("/app/approvals", f"/app/approvals/{rid}") else "/app/approvals"


async def _decide(request: web.Request, approve: bool) -> web.StreamResponse:
    """The page's Approve / Reject: exactly what a tap on the card does."""
    ctx, user = web_ctx(request), current_user(request)
    assert user is not None
    rid = _request_id(request)
    form = await request.post()
    back = _back(request, form, rid)
    seq_raw = str(form.get("seq") or "")
    if not seq_raw.isdigit() or len(seq_raw) > 4:
        return error_page(request, 400, "请求无效 / That request was not valid.")
    seq, now = int(seq_raw), utcnow()
    actor = sm.Actor(user.id, "web", f"web:{user.id}")
    async with ctx.session() as db:
        # every read first (view, cards, who gets what), then the decision's writes
        v = await ac.load_view(db, rid)
        if v is None:
            raise web.HTTPNotFound()
        rules = await _rules(db, ctx, v)
        reason = "" if approve else reject_reason(rules, form.get("reason"),
                                                  form.get("reason_text"))
        if not approve and not reason:
            raise web.HTTPSeeOther(f"{back}?flash=reason")
        v.users.setdefault(user.id, user)
        step_id = next((s.id for s in v.steps if s.seq == seq), 0)
        sink = OutboxSink(db, f"web:apr:{rid}:{seq}:{step_id}", now)
        n = ac.Notifier(db, sink, lambda name, **a: pack_action(ctx.secret, name, **a), rules,
                        now, prefer=v.info.platform if v.info else "")
        await n.prefetch(v, seq, approve)
        out = await sm.decide(db, rid, seq, actor, approve, now, reason=reason,
                              shown={"via": "web", **ac.shown(v, seq)},
                              loaded=(v.request, v.steps))
        if out.ok and out.step is not None:
            # the approver's own card too (no tap to answer here): "已同意 by …" in place
            await n.after_decision(v, out.step, skip_user=None)
        await db.commit()  # the decision, its audit row and its outbox rows together
    if out.ok:
        ctx.wake()
        raise web.HTTPSeeOther(f"{back}?flash={'approved' if approve else 'rejected'}")
    if out.code == "stale":
        raise web.HTTPSeeOther(f"{back}?flash=stale")
    if out.code == "not_found":
        raise web.HTTPNotFound()
    if out.code == "own":
        return error_page(request, 403, "不能审批自己的申请 / You cannot decide your own "
                                        "request.")
    return error_page(request, 403, "你不是这一步的审批人，操作未生效 / You are not the "
                                    "approver of this step: nothing changed.")


@routes.post("/app/approvals/{id}/approve")
@require()
async def approve(request: web.Request) -> web.StreamResponse:
    return await _decide(request, True)


@routes.post("/app/approvals/{id}/reject")
@require()
async def reject(request: web.Request) -> web.StreamResponse:
    return await _decide(request, False)
