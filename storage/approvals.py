"""THE approval state machine: every state change of a request or a step happens here.

Request: ``draft ─submit→ pending ─(last step approved)→ approved``; ``pending ─reject→
rejected``; ``draft|pending ─cancel→ cancelled``.
Step: ``waiting ─(previous approved)→ pending ─decide→ approved|rejected``; ``waiting|pending
─(request rejected/cancelled)→ skipped``; a pending step may be ``escalated`` (new approver).

Every transition is one conditional ``UPDATE … WHERE state=…`` (compare-and-set): of two taps
racing for the same step exactly one changes a row; the other sees ``rowcount == 0`` and gets
``stale``. Who may act is part of the same WHERE (``approver_id = the approver we checked``), so
an escalation racing a tap cannot let the former approver through. The first statement of a
decision is that UPDATE, so on SQLite the transaction takes the write lock before it reads
(no stale snapshot), and on PostgreSQL the row lock serialises the racers. Every transition,
and every refused attempt, writes an ``audit_log`` row (who, when, platform, what the card
showed). Callers commit; nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, update
from sqlalchemy.ext.asyncio import AsyncSession as SAAsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select

from config.rules import SETTING_KEY, ApprovalRules, load_rules
from storage.approval_models import ApprovalCard, ApprovalDelegation, ApprovalInfo, ApprovalTimer
from storage.models import (
    ApprovalRequest,
    ApprovalStep,
    AuditLog,
    Customer,
    CustomerAlias,
    Deal,
    Setting,
    Team,
    User,
)

OPEN = ("draft", "pending")
FINAL = ("approved", "rejected", "cancelled")
# code → what the tapper is told; "ok" is the one that changed state
STALE_TEXT = "已处理 / already handled"
CODES = {"ok", "stale", "forbidden", "own", "not_found"}


@dataclass
class Actor:
    """Who caused a transition: a known user (or the scheduler, ``user_id=None``)."""

    user_id: int | None
    platform: str = ""
    ref: str = ""  # platform:external id


@dataclass
class Outcome:
    code: str  # ok | stale | forbidden | own | not_found
    request: ApprovalRequest | None = None
    step: ApprovalStep | None = None  # the step acted on
    next_step: ApprovalStep | None = None  # the step that became current, if any
    steps: list[ApprovalStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.code == "ok"

    @property
    def final(self) -> bool:
        return bool(self.request and self.request.state in FINAL)


# -- helpers -----------------------------------------------------------------------------------

def _set(obj, **values) -> None:
    """Mirror a row change made by a conditional UPDATE on the loaded object, without making
    the ORM think it is dirty (it would write the row again, unguarded)."""
    for k, v in values.items():
        set_committed_value(obj, k, v)


async def run_sql(session, stmt, params=None):
    """SQLAlchemy's own ``execute`` (sqlmodel's override only adds a deprecation nag)."""
    return await SAAsyncSession.execute(session, stmt, params)


def _audit(session, actor: Actor, action: str, request_id: int | None, now: datetime,
           **detail: Any) -> None:
    session.add(AuditLog(at=now, actor_id=actor.user_id, actor_ref=actor.ref,
                         platform=actor.platform, action=action, entity="approval_request",
                         entity_id=str(request_id or ""), detail=detail))


async def _rows(session, stmt):
    return (await run_sql(session, stmt.execution_options(populate_existing=True))).scalars()


async def get_request(session, request_id: int) -> ApprovalRequest | None:
    return (await _rows(session, select(ApprovalRequest)
                        .where(ApprovalRequest.id == request_id))).first()


async def get_steps(session, request_id: int) -> list[ApprovalStep]:
    return list(await _rows(session, select(ApprovalStep)
                            .where(ApprovalStep.request_id == request_id)
                            .order_by(ApprovalStep.seq)))


async def get_info(session, request_id: int) -> ApprovalInfo | None:
    return (await _rows(session, select(ApprovalInfo)
                        .where(ApprovalInfo.request_id == request_id))).first()


async def get_user(session, user_id: int | None) -> User | None:
    if user_id is None:
        return None
    return (await run_sql(session, select(User).where(User.id == user_id))).scalars().first()


async def users_by_id(session, ids) -> dict[int, User]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    rows = (await run_sql(session, select(User).where(col(User.id).in_(ids)))).scalars()
    return {u.id: u for u in rows}


async def find_user_by_name(session, name: str) -> User | None:
    return (await run_sql(session, select(User).where(User.name == name, User.active)
                                  .order_by(User.id))).scalars().first()


# -- rules -------------------------------------------------------------------------------------
async def current_rules(session, defaults: dict[str, Any] | None = None) -> ApprovalRules:
    """The latest stored rule version, else the TOML/built-in defaults (version 0)."""
    row = (await run_sql(session, select(Setting).where(Setting.key == SETTING_KEY)
                                 .order_by(col(Setting.version).desc()).limit(1))
           ).scalars().first()
    if row is None:
        return load_rules(defaults or {}, 0)
    return load_rules(row.value, row.version)


async def save_rules(session, value: dict[str, Any], actor: Actor, now: datetime
                     ) -> ApprovalRules:
    """Store a new rule version (validated first); requests in flight keep theirs."""
    load_rules(value, 0)  # raises on a bad rule set before anything is written
    last = (await run_sql(session, select(func.max(Setting.version))
                                  .where(Setting.key == SETTING_KEY))).scalar() or 0
    version = last + 1
    session.add(Setting(key=SETTING_KEY, version=version, value=value,
                        created_by=actor.user_id, created_at=now))
    session.add(AuditLog(at=now, actor_id=actor.user_id, actor_ref=actor.ref,
                         platform=actor.platform, action="rules.edit", entity="rules",
                         entity_id=f"{SETTING_KEY}:{version}", detail={"value": value}))
    await session.flush()
    return load_rules(value, version)


# -- customers ---------------------------------------------------------------------------------
async def find_customer(session, text: str) -> Customer | None:
    """Exact name / short name / alias first, then a unique substring match."""
    text = text.strip()
    if not text:
        return None
    exact = (await run_sql(session,
        select(Customer).outerjoin(CustomerAlias, CustomerAlias.customer_id == Customer.id)
        .where(or_(Customer.name == text, Customer.short_name == text,
                   CustomerAlias.alias == text)).order_by(Customer.id))).scalars().first()
    if exact:
        return exact
    like = f"%{text}%"
    rows = list((await run_sql(session,
        select(Customer).outerjoin(CustomerAlias, CustomerAlias.customer_id == Customer.id)
        .where(or_(col(Customer.name).like(like), col(CustomerAlias.alias).like(like)))
        .order_by(Customer.id).limit(5))).scalars().unique())
    ids = {c.id for c in rows}
    return rows[0] if len(ids) == 1 else None


async def open_deals(session, customer_id: int | None, owner_id: int | None = None
                     ) -> list[Deal]:
    """The customer's open deals, ``owner_id``'s own first, then the most recently active."""
    if customer_id is None:
        return []
    q = select(Deal).where(Deal.customer_id == customer_id,
                           col(Deal.stage).not_in(("won", "lost")))
    rows = list((await run_sql(session, q.order_by(col(Deal.last_activity_at).desc())))
                .scalars())
    mine = [d for d in rows if owner_id is not None and d.owner_id == owner_id]
    return mine + [d for d in rows if d not in mine]


async def open_deal(session, customer_id: int | None, owner_id: int | None = None
                    ) -> Deal | None:
    rows = await open_deals(session, customer_id, owner_id)
    return rows[0] if rows else None


# -- delegation --------------------------------------------------------------------------------
async def delegates_of(session, user_id: int, now: datetime) -> list[int]:
    rows = (await run_sql(session,
        select(ApprovalDelegation.delegate_id).where(
            ApprovalDelegation.delegator_id == user_id, ApprovalDelegation.active,
            ApprovalDelegation.until > now).order_by(col(ApprovalDelegation.id).desc())))
    return [r[0] for r in rows]


async def delegators_of(session, user_id: int, now: datetime) -> list[int]:
    rows = (await run_sql(session,
        select(ApprovalDelegation.delegator_id).where(
            ApprovalDelegation.delegate_id == user_id, ApprovalDelegation.active,
            ApprovalDelegation.until > now)))
    return [r[0] for r in rows]


async def set_delegation(session, delegator: User, delegate: User, until: datetime,
                         actor: Actor, now: datetime) -> ApprovalDelegation:
    if delegator.id == delegate.id:
        raise ValueError("cannot delegate to oneself")
    await run_sql(session, update(ApprovalDelegation)
                          .where(col(ApprovalDelegation.delegator_id) == delegator.id,
                                 col(ApprovalDelegation.active).is_(True))
                          .values(active=False))
    row = ApprovalDelegation(delegator_id=delegator.id, delegate_id=delegate.id, until=until,
                             created_at=now)
    session.add(row)
    await session.flush()
    session.add(AuditLog(at=now, actor_id=actor.user_id, actor_ref=actor.ref,
                         platform=actor.platform, action="approval.delegate",
                         entity="approval_delegation", entity_id=str(row.id),
                         detail={"delegator": delegator.id, "delegate": delegate.id,
                                 "until": until.isoformat()}))
    return row


async def end_delegation(session, delegator_id: int, actor: Actor, now: datetime) -> int:
    res = await run_sql(session, update(ApprovalDelegation)
                                .where(col(ApprovalDelegation.delegator_id) == delegator_id,
                                       col(ApprovalDelegation.active).is_(True))
                                .values(active=False))
    if res.rowcount:
        session.add(AuditLog(at=now, actor_id=actor.user_id, actor_ref=actor.ref,
                             platform=actor.platform, action="approval.delegate_end",
                             entity="approval_delegation", entity_id=str(delegator_id)))
    return res.rowcount


async def may_act(session, step: ApprovalStep, user_id: int | None, now: datetime) -> bool:
    if user_id is None or step.approver_id is None:
        return False
    if step.approver_id == user_id:
        return True
    return user_id in await delegates_of(session, step.approver_id, now)


# -- routing: roles → people -------------------------------------------------------------------
async def manager_of(session, user: User) -> User | None:
    """The user's manager: ``users.manager_id``, else their team's manager, else the parent
    team's manager (a manager's own manager)."""
    mgr = await get_user(session, user.manager_id)
    if mgr and mgr.active and mgr.id != user.id:
        return mgr
    team = (await run_sql(session, select(Team).where(Team.id == user.team_id))).scalars().first()
    while team is not None:
        if team.manager_id and team.manager_id != user.id:
            mgr = await get_user(session, team.manager_id)
            if mgr and mgr.active:
                return mgr
        if team.parent_id is None:
            break
        team = (await run_sql(session, select(Team).where(Team.id == team.parent_id))
                ).scalars().first()
    return None


async def first_with_role(session, role: str, exclude: set[int]) -> User | None:
    rows = (await run_sql(session, select(User).where(User.role == role, User.active)
                                  .order_by(User.id))).scalars()
    return next((u for u in rows if u.id not in exclude), None)


async def resolve_chain(session, requester: User, roles: list[str]
                        ) -> list[tuple[str, int | None]]:
    """(role, approver id) per step. A requester never approves their own request: a step that
    would land on them goes one level up; the same person twice in a row is asked once."""
    out: list[tuple[str, int | None]] = []
    for role in roles:
        who: User | None = None
        if role == "manager":
            who = await manager_of(session, requester)
            if who is None:
                who = await first_with_role(session, "vp", {requester.id})
        else:
            who = await first_with_role(session, role, {requester.id})
            if who is None and role != "admin":
                who = await first_with_role(session, "admin", {requester.id})
        if who is None:
            who = await first_with_role(session, "admin", {requester.id})
        wid = who.id if who else None
        if out and out[-1][1] == wid:
            continue
        if wid in {w for _, w in out}:
            continue
        out.append((role, wid))
    return out


# -- transitions -------------------------------------------------------------------------------
async def create_draft(session, *, requester: User, kind: str, amount: float = 0,
                       discount_pct: float | None = None, discount_amount: float | None = None,
                       note: str = "", subject: str = "", customer_id: int | None = None,
                       deal_id: int | None = None, actor: Actor, now: datetime
                       ) -> ApprovalRequest:
    req = ApprovalRequest(kind=kind, requester_id=requester.id, customer_id=customer_id,
                          deal_id=deal_id, amount=amount, discount_pct=discount_pct, note=note,
                          state="draft", rule_version=0, created_at=now)
    session.add(req)
    await session.flush()
    session.add(ApprovalInfo(request_id=req.id, subject=subject, platform=actor.platform,
                             discount_amount=discount_amount))
    _audit(session, actor, "approval.draft", req.id, now, kind=kind, amount=amount,
           discount_pct=discount_pct, subject=subject, note=note)
    return req


async def submit(session, request_id: int, actor: Actor, rules: ApprovalRules, now: datetime,
                 shown: dict | None = None) -> Outcome:
    """draft → pending: materialise the chain from ``rules`` and make step 1 current."""
    res = await run_sql(session,
        update(ApprovalRequest)
        .where(col(ApprovalRequest.id) == request_id, col(ApprovalRequest.state) == "draft",
               col(ApprovalRequest.requester_id) == actor.user_id)
        .values(state="pending", rule_version=rules.version,
                version=ApprovalRequest.version + 1))
    req = await get_request(session, request_id)
    if res.rowcount != 1:
        code = "not_found" if req is None else (
            "forbidden" if req.requester_id != actor.user_id else "stale")
        _audit(session, actor, f"approval.submit_{code}", request_id, now, shown=shown or {})
        return Outcome(code, req)
    requester = await get_user(session, req.requester_id)
    roles = rules.chain_for(req.kind, req.amount, req.discount_pct)
    chain = await resolve_chain(session, requester, roles)
    steps = []
    for i, (role, approver) in enumerate(chain, start=1):
        st = ApprovalStep(request_id=req.id, seq=i, role=role, approver_id=approver,
                          state="pending" if i == 1 else "waiting")
        session.add(st)
        steps.append(st)
    info = await get_info(session, req.id)
    if info is not None:
        info.rules = rules.model_dump(mode="json")
        session.add(info)
    await session.flush()
    first = steps[0]
    session.add(ApprovalTimer(step_id=first.id, request_id=req.id, active_since=now,
                              original_approver_id=first.approver_id))
    _audit(session, actor, "approval.submit", req.id, now, rule_version=rules.version,
           chain=[{"seq": s.seq, "role": s.role, "approver": s.approver_id} for s in steps],
           shown=shown or {})
    await session.flush()
    return Outcome("ok", req, None, first, steps)


async def decide(session, request_id: int, seq: int, actor: Actor, approve: bool,
                 now: datetime, reason: str = "", shown: dict | None = None,
                 expected_approver: int | None = None,
                 loaded: tuple[ApprovalRequest, list[ApprovalStep]] | None = None) -> Outcome:
    """pending step → approved/rejected, by its approver or their delegate; exactly once.

    ``loaded``: the request and its steps, read by the caller in this session just before
    (so every read happens before the first write); the UPDATE's WHERE still decides."""
    shown = shown or {}
    decision = "approved" if approve else "rejected"
    if loaded is not None:
        req, steps = loaded
    else:
        steps = await get_steps(session, request_id)
        req = await get_request(session, request_id) if steps else None
    step = next((x for x in steps if x.seq == seq), None)
    if step is None or req is None:
        _audit(session, actor, "approval.refused", request_id, now, why="not_found", seq=seq,
               shown=shown)
        return Outcome("not_found", req, step)
    if actor.user_id is not None and actor.user_id == req.requester_id:
        _audit(session, actor, "approval.refused", request_id, now, why="own", seq=seq,
               shown=shown)
        return Outcome("own", req, step)
    approver = step.approver_id
    if expected_approver is not None and expected_approver != approver:
        # the card was addressed to someone the step no longer waits for (escalated)
        allowed = False
    else:
        allowed = await may_act(session, step, actor.user_id, now)
    if not allowed:
        was = actor.user_id is not None and expected_approver is not None and (
            expected_approver == actor.user_id
            or actor.user_id in await delegates_of(session, expected_approver, now))
        why = "reassigned" if was else "not_approver"
        _audit(session, actor, "approval.refused", request_id, now, why=why, seq=seq,
               shown=shown)
        return Outcome("stale" if was else "forbidden", req, step)
    if step.state != "pending" or req.state != "pending":
        _audit(session, actor, "approval.stale_tap", request_id, now, seq=seq,
               step_state=step.state, shown=shown)
        return Outcome("stale", req, step)

    res = await run_sql(session,
        update(ApprovalStep)
        .where(col(ApprovalStep.id) == step.id, col(ApprovalStep.state) == "pending",
               col(ApprovalStep.approver_id) == approver)
        .values(state=decision, decided_by=actor.user_id, decided_at=now,
                reason=reason[:500]))
    if res.rowcount != 1:  # lost the race: someone decided (or escalated) first
        _audit(session, actor, "approval.stale_tap", request_id, now, seq=seq, raced=True,
               shown=shown)
        return Outcome("stale", await get_request(session, request_id),
                       (await _rows(session, select(ApprovalStep)
                                    .where(ApprovalStep.id == step.id))).first())

    _set(step, state=decision, decided_by=actor.user_id, decided_at=now, reason=reason[:500])
    nxt = next((x for x in steps if x.state == "waiting"), None) if approve else None
    if nxt is not None:
        await run_sql(session, update(ApprovalStep)
                      .where(col(ApprovalStep.id) == nxt.id,
                             col(ApprovalStep.state) == "waiting")
                      .values(state="pending"))
        _set(nxt, state="pending")
        session.add(ApprovalTimer(step_id=nxt.id, request_id=request_id, active_since=now,
                                  original_approver_id=nxt.approver_id))
        new_state = "pending"
    else:
        new_state = decision
    await run_sql(session, update(ApprovalRequest)
                  .where(col(ApprovalRequest.id) == request_id,
                         col(ApprovalRequest.state) == "pending")
                  .values(state=new_state, version=ApprovalRequest.version + 1))
    _set(req, state=new_state, version=req.version + 1)
    if not approve:
        await run_sql(session, update(ApprovalStep)
                      .where(col(ApprovalStep.request_id) == request_id,
                             col(ApprovalStep.state) == "waiting")
                      .values(state="skipped"))
        for x in steps:
            if x.state == "waiting":
                _set(x, state="skipped")
    _audit(session, actor, f"approval.{decision}", request_id, now, seq=seq,
           approver=approver, on_behalf=approver if actor.user_id != approver else None,
           reason=reason, next_seq=nxt.seq if nxt else None, shown=shown)
    return Outcome("ok", req, step, nxt, steps)


async def cancel(session, request_id: int, actor: Actor, now: datetime,
                 shown: dict | None = None) -> Outcome:
    """draft|pending → cancelled, by the requester only."""
    res = await run_sql(session,
        update(ApprovalRequest)
        .where(col(ApprovalRequest.id) == request_id, col(ApprovalRequest.state).in_(OPEN),
               col(ApprovalRequest.requester_id) == actor.user_id)
        .values(state="cancelled", version=ApprovalRequest.version + 1))
    req = await get_request(session, request_id)
    if res.rowcount != 1:
        code = "not_found" if req is None else (
            "forbidden" if req.requester_id != actor.user_id else "stale")
        _audit(session, actor, f"approval.cancel_{code}", request_id, now, shown=shown or {})
        return Outcome(code, req)
    await run_sql(session, update(ApprovalStep)
                          .where(col(ApprovalStep.request_id) == request_id,
                                 col(ApprovalStep.state).in_(("waiting", "pending")))
                          .values(state="skipped"))
    _audit(session, actor, "approval.cancelled", request_id, now, shown=shown or {})
    await session.flush()
    return Outcome("ok", await get_request(session, request_id),
                   steps=await get_steps(session, request_id))


async def escalate(session, step_id: int, to_user_id: int, actor: Actor, now: datetime,
                   why: str = "timeout") -> Outcome:
    """A pending step gets a new approver (its approver's manager or delegate)."""
    step = (await _rows(session, select(ApprovalStep).where(ApprovalStep.id == step_id))
            ).first()
    if step is None:
        return Outcome("not_found")
    req = await get_request(session, step.request_id)
    if to_user_id == req.requester_id:
        return Outcome("own", req, step)
    old = step.approver_id
    res = await run_sql(session,
        update(ApprovalStep)
        .where(col(ApprovalStep.id) == step_id, col(ApprovalStep.state) == "pending",
               col(ApprovalStep.approver_id) == old)
        .values(approver_id=to_user_id))
    if res.rowcount != 1:
        return Outcome("stale", req, step)
    await run_sql(session, update(ApprovalTimer)
                          .where(col(ApprovalTimer.step_id) == step_id)
                          .values(active_since=now, reminded_at=None,
                                  escalations=ApprovalTimer.escalations + 1))
    await run_sql(session, update(ApprovalRequest)
                          .where(col(ApprovalRequest.id) == req.id)
                          .values(version=ApprovalRequest.version + 1))
    _audit(session, actor, "approval.escalated", req.id, now, seq=step.seq, from_user=old,
           to_user=to_user_id, why=why)
    await session.flush()
    step = (await _rows(session, select(ApprovalStep).where(ApprovalStep.id == step_id))
            ).first()
    return Outcome("ok", await get_request(session, req.id), step,
                   steps=await get_steps(session, req.id))


async def mark_reminded(session, step_id: int, now: datetime) -> bool:
    """Claim the reminder of a step's current period: true for exactly one caller."""
    res = await run_sql(session, update(ApprovalTimer)
                                .where(col(ApprovalTimer.step_id) == step_id,
                                       col(ApprovalTimer.reminded_at).is_(None))
                                .values(reminded_at=now))
    return res.rowcount == 1


# -- queries -----------------------------------------------------------------------------------
async def pending_for(session, user_id: int, now: datetime) -> list[tuple[ApprovalRequest,
                                                                         ApprovalStep]]:
    """Steps waiting for me, as approver or as an active delegate."""
    who = [user_id] + await delegators_of(session, user_id, now)
    rows = (await run_sql(session,
        select(ApprovalRequest, ApprovalStep)
        .join(ApprovalStep, ApprovalStep.request_id == ApprovalRequest.id)
        .where(ApprovalStep.state == "pending", ApprovalRequest.state == "pending",
               col(ApprovalStep.approver_id).in_(who),
               ApprovalRequest.requester_id != user_id)
        .order_by(ApprovalRequest.id))).all()
    return [(r, s) for r, s in rows]


async def requests_of(session, user_id: int, limit: int = 10) -> list[ApprovalRequest]:
    return list((await run_sql(session,
        select(ApprovalRequest).where(ApprovalRequest.requester_id == user_id,
                                      ApprovalRequest.state != "draft")
        .order_by(col(ApprovalRequest.id).desc()).limit(limit))).scalars())


async def due_steps(session, step_id: int | None = None
                    ) -> list[tuple[ApprovalStep, ApprovalTimer]]:
    """Pending steps with their timers (one step when ``step_id`` is given)."""
    q = (select(ApprovalStep, ApprovalTimer)
         .join(ApprovalTimer, ApprovalTimer.step_id == ApprovalStep.id)
         .where(ApprovalStep.state == "pending"))
    if step_id is not None:
        q = q.where(ApprovalStep.id == step_id)
    rows = (await run_sql(session, q.order_by(ApprovalStep.id)
                          .execution_options(populate_existing=True))).all()
    return [(s, t) for s, t in rows]


async def cards_of(session, request_id: int, seq: int | None = None) -> list[ApprovalCard]:
    q = select(ApprovalCard).where(ApprovalCard.request_id == request_id,
                                   col(ApprovalCard.closed).is_(False))
    if seq is not None:
        q = q.where(ApprovalCard.seq == seq)
    return list((await run_sql(session, q.order_by(ApprovalCard.id))).scalars())
