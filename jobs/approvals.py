"""Reminders and escalation for approval steps nobody acted on.

``scan(engine, settings, secret, now)`` is one pass with an explicit clock (tests freeze it):
for every pending step, the working hours since it became current (or was last escalated) are
counted with the rule set the request started with; after ``remind_after_h`` the approver (and
their delegates) get the card again with a reminder, after ``escalate_after_h`` the step moves to
the approver's delegate or manager (at most ``max_escalations`` times). Nothing is sent outside
working hours or inside quiet hours: the next pass in working time catches up.

Each step is handled in its own transaction, claimed with a conditional UPDATE (reminder:
``reminded_at IS NULL``; escalation: the state machine's compare-and-set on the approver), and
outbox keys are derived from (step, period), so two schedulers firing at once send once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.event import OutMessage, Target, utcnow
from cards import Card, pack_action
from config import Settings
from config.rules import ApprovalRules, load_rules
from handlers import approval_cards as ac
from storage import approvals as sm
from storage.models import AuditLog, OutboxMessage

log = logging.getLogger(__name__)
SYSTEM = sm.Actor(None, "", "scheduler")


class OutboxSink:
    """``approval_cards.Sink`` writing outbox rows directly, keys derived from ``prefix``."""

    def __init__(self, session, prefix: str, now: datetime):
        self.session, self.prefix, self.now = session, prefix, now
        self.n = 0

    def _add(self, target: Target, msg: OutMessage) -> str:
        self.n += 1
        key = f"{self.prefix}:{self.n}"
        # due at once: the (possibly frozen) clock decides *what* is due, not when it is sent
        self.session.add(OutboxMessage(idem_key=key, platform=target.platform,
                                       target=target.model_dump(mode="json"),
                                       message=msg.model_dump(mode="json"),
                                       next_at=min(self.now, utcnow())))
        return key

    async def send(self, target: Target, content: str | Card) -> str:
        if isinstance(content, Card):
            return self._add(target, OutMessage(kind="card",
                                                card=content.model_dump(mode="json")))
        return self._add(target, OutMessage(kind="text", text=content))

    async def update(self, target: Target, card: Card, card_ref: dict) -> None:
        self._add(target, OutMessage(kind="update_card", card=card.model_dump(mode="json"),
                                     card_ref=card_ref))


def _rules_for(v: ac.View, fallback: ApprovalRules) -> ApprovalRules:
    if v.info and v.info.rules:
        try:
            data = {k: x for k, x in v.info.rules.items() if k != "version"}
            return load_rules(data, v.info.rules.get("version", 0))
        except ValueError:
            pass
    return fallback


async def escalation_target(session, approver_id: int, requester_id: int,
                            now: datetime) -> int | None:
    """The approver's delegate, else their manager, else a VP — never the requester."""
    for d in await sm.delegates_of(session, approver_id, now):
        if d != requester_id:
            return d
    approver = await sm.get_user(session, approver_id)
    if approver is not None:
        mgr = await sm.manager_of(session, approver)
        if mgr is not None and mgr.id not in (requester_id, approver_id):
            return mgr.id
    vp = await sm.first_with_role(session, "vp", {approver_id, requester_id})
    return vp.id if vp else None


async def scan(engine, settings: Settings, secret: bytes, now: datetime | None = None
               ) -> dict[str, int]:
    """One reminder/escalation pass; returns counts (``outbox`` = rows written)."""
    now = now or utcnow()
    counts = {"reminded": 0, "escalated": 0, "outbox": 0, "skipped_quiet": 0}
    defaults = (settings.rules or {}).get("approvals")
    async with AsyncSession(engine, expire_on_commit=False) as session:
        current = await sm.current_rules(session, defaults)
        due = [(s.id, s.request_id) for s, _t in await sm.due_steps(session)]
    for step_id, request_id in due:
        try:
            n = await _one(engine, secret, current, step_id, request_id, now, counts)
            counts["outbox"] += n
        except IntegrityError:  # another scheduler wrote this period's rows first
            log.info("approval step %s: handled by a concurrent pass", step_id)
    return counts


async def _one(engine, secret: bytes, current: ApprovalRules, step_id: int, request_id: int,
               now: datetime, counts: dict[str, int]) -> int:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        v = await ac.load_view(session, request_id)
        if v is None or v.request.state != "pending":
            return 0
        rules = _rules_for(v, current)
        if not rules.may_notify(now):
            counts["skipped_quiet"] += 1
            return 0
        rows = await sm.due_steps(session, step_id)
        if not rows:
            return 0
        step, timer = rows[0]
        hours = rules.working_hours_between(timer.active_since, now)

        def sign(name: str, **args) -> str:
            return pack_action(secret, name, **args)

        if hours >= rules.escalate_after_h and timer.escalations < rules.max_escalations:
            to = await escalation_target(session, step.approver_id, v.request.requester_id,
                                         now)
            if to is None:
                return 0
            old = step.approver_id
            sink = OutboxSink(session, f"job:apr:{step_id}:esc:{timer.escalations}", now)
            out = await sm.escalate(session, step_id, to, SYSTEM, now,
                                    why=f"no action for {hours:.1f} working hours")
            if not out.ok:
                await session.rollback()
                return 0
            v = await ac.load_view(session, request_id)
            assert v is not None
            step = next(s for s in v.steps if s.id == step_id)
            n = ac.Notifier(session, sink, sign, rules, now, prefer=(v.info.platform
                                                                      if v.info else ""))
            await n.close_cards(v, step.seq, f"已超时转交 {v.name(to)} / escalated")
            await n.approver_cards(v, step)
            await n.send_user(old, f"审批 {v.summary()} 超过 {rules.escalate_after_h:g} 个工作小时"
                                   f"未处理，已转交 {v.name(to)}。")
            await n.send_user(v.request.requester_id,
                              f"你的申请 {v.summary()} 已超时，转交 {v.name(to)} 审批。")
            await session.commit()
            counts["escalated"] += 1
            return sink.n
        if hours >= rules.remind_after_h and timer.reminded_at is None:
            if not await sm.mark_reminded(session, step_id, now):
                await session.rollback()
                return 0
            sink = OutboxSink(session, f"job:apr:{step_id}:remind:{timer.escalations}", now)
            n = ac.Notifier(session, sink, sign, rules, now,
                            prefer=v.info.platform if v.info else "")
            await n.send_user(step.approver_id,
                              f"⏰ 提醒：{v.summary()}（{v.requester}）已等你审批 "
                              f"{hours:.1f} 个工作小时。/ reminder")
            await n.approver_cards(v, step)
            session.add(AuditLog(at=now, actor_ref="scheduler", action="approval.reminded",
                                    entity="approval_request", entity_id=str(request_id),
                                    detail={"seq": step.seq, "approver": step.approver_id,
                                            "hours": round(hours, 2)}))
            await session.commit()
            counts["reminded"] += 1
            return sink.n
    return 0


def schedule(scheduler, engine, settings: Settings, secret: bytes, wake=lambda: None,
             every_s: float = 300.0) -> None:
    """Register the pass with the app's ``jobs.scheduler.JobScheduler`` (``add_periodic``);
    safe on several instances at once (each step's period is claimed)."""
    async def tick() -> dict[str, int]:
        counts = await scan(engine, settings, secret)
        if counts["outbox"]:
            wake()
        return counts

    scheduler.add_periodic("approvals.reminders", tick, every_s)


async def run_forever(engine, settings: Settings, secret: bytes, wake=lambda: None,
                      every_s: float = 300.0) -> None:
    """A minimal scheduler loop (until the APScheduler wrapper exists)."""
    while True:
        try:
            counts = await scan(engine, settings, secret)
            if counts["outbox"]:
                wake()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the loop outlives DB hiccups
            log.exception("approval scan failed")
        await asyncio.sleep(every_s)
