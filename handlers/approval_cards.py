"""Approval cards (neutral ``Card``) and who gets which card: shared by the chat handlers
(``handlers.approvals``) and the reminder/escalation jobs (``jobs.approvals``).

``Notifier`` writes through a ``Sink`` (the handler's ``Ctx`` or a job's outbox writer), so a
card sent from a tap and one sent by the scheduler are the same card, recorded the same way
(``approval_cards`` row → the outbox row → the platform's card ref for later updates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from bot.event import Target
from cards import KV, Button, Card, Option, Select, TextInput
from config.rules import ApprovalRules
from storage import approvals as sm
from storage.approval_models import ApprovalCard, ApprovalDelegation, ApprovalInfo
from storage.approvals import run_sql
from storage.models import ApprovalRequest, ApprovalStep, Customer, Identity, OutboxMessage, User

KIND_LABEL = {"quote": "报价", "discount": "折扣", "contract": "合同",
              "new_customer": "新客户"}
KIND_EN = {"quote": "quote", "discount": "discount", "contract": "contract",
           "new_customer": "new customer"}
ROLE_LABEL = {"manager": "经理", "vp": "VP", "finance": "财务", "admin": "管理员"}
STEP_ICON = {"waiting": "·", "pending": "⏳", "approved": "✅", "rejected": "❌",
             "skipped": "–"}
STATE_LABEL = {"draft": "草稿", "pending": "审批中", "approved": "已批准 ✅",
               "rejected": "已驳回 ❌", "cancelled": "已撤回"}


def money(x: float | None) -> str:
    if x is None:
        return "—"
    return f"¥{x:,.0f}" if float(x).is_integer() else f"¥{x:,.2f}"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{x:g}%"


def hhmm(rules: ApprovalRules, at: datetime) -> str:
    return at.astimezone(rules.tz).strftime("%H:%M")


@dataclass
class View:
    """Everything a card about one request shows."""

    request: ApprovalRequest
    steps: list[ApprovalStep]
    info: ApprovalInfo | None
    users: dict[int, User]
    customer: Customer | None

    def name(self, user_id: int | None) -> str:
        u = self.users.get(user_id) if user_id is not None else None
        return u.name if u else "（无人）"

    @property
    def requester(self) -> str:
        return self.name(self.request.requester_id)

    @property
    def subject(self) -> str:
        if self.customer is not None:
            return self.customer.name
        return self.info.subject if self.info else ""

    @property
    def title(self) -> str:
        k = self.request.kind
        return f"{KIND_LABEL.get(k, k)}审批 #{self.request.id} / {KIND_EN.get(k, k)} approval"

    def chain(self) -> str:
        return " → ".join(f"{self.name(s.approver_id)}（{ROLE_LABEL.get(s.role, s.role)}）"
                          f"{STEP_ICON.get(s.state, '')}" for s in self.steps)

    def current(self) -> ApprovalStep | None:
        return next((s for s in self.steps if s.state == "pending"), None)

    def summary(self) -> str:
        r = self.request
        bits = [f"#{r.id}", KIND_LABEL.get(r.kind, r.kind), self.subject]
        if r.amount:
            bits.append(money(r.amount))
        if r.discount_pct is not None:
            bits.append(f"折扣 {pct(r.discount_pct)}")
        return " ".join(b for b in bits if b)


def _view_queries():
    """The two statements of ``load_view``, built once: building the aliases and joins anew on
    every tap cost more than running them (SQLAlchemy caches the compiled form by structure,
    but constructs, aliases and hashes it each time)."""
    requester, approver, decider = aliased(User), aliased(User), aliased(User)
    rid = bindparam("rid")
    head = (select(ApprovalRequest, ApprovalInfo, Customer, requester)
            .outerjoin(ApprovalInfo, ApprovalInfo.request_id == ApprovalRequest.id)
            .outerjoin(Customer, Customer.id == ApprovalRequest.customer_id)
            .outerjoin(requester, requester.id == ApprovalRequest.requester_id)
            .where(ApprovalRequest.id == rid)
            .execution_options(populate_existing=True))
    steps = (select(ApprovalStep, approver, decider)
             .outerjoin(approver, approver.id == ApprovalStep.approver_id)
             .outerjoin(decider, decider.id == ApprovalStep.decided_by)
             .where(ApprovalStep.request_id == rid)
             .order_by(ApprovalStep.seq)
             .execution_options(populate_existing=True))
    return head, steps


_VIEW_HEAD, _VIEW_STEPS = _view_queries()


async def load_view(session, request_id: int) -> View | None:
    """The request as cards show it, in two queries (taps are the hot path)."""
    row = (await run_sql(session, _VIEW_HEAD, {"rid": request_id})).first()
    if row is None:
        return None
    req, info, customer, req_user = row
    users: dict[int, User] = {req_user.id: req_user} if req_user is not None else {}
    rows = (await run_sql(session, _VIEW_STEPS, {"rid": request_id})).all()
    steps = []
    for step, a, d in rows:
        steps.append(step)
        for u in (a, d):
            if u is not None:
                users[u.id] = u
    return View(req, steps, info, users, customer)


def fields(v: View) -> list[KV]:
    r = v.request
    out = [KV(label="申请人 / By", value=v.requester),
           KV(label="客户 / Customer", value=v.subject or "—")]
    if r.kind != "new_customer":
        out.append(KV(label="金额 / Amount", value=money(r.amount)))
    if r.kind == "discount" or r.discount_pct is not None:
        d = pct(r.discount_pct)
        if v.info and v.info.discount_amount is not None:
            d = f"{money(v.info.discount_amount)}" + (f"（{d}）" if r.discount_pct else "")
        out.append(KV(label="折扣 / Discount", value=d))
    if r.note:
        out.append(KV(label="备注 / Note", value=r.note))
    return out


def shown(v: View, seq: int | None = None) -> dict[str, Any]:
    """What a card showed, for the audit row (signed into the button, so it is trustworthy)."""
    r = v.request
    return {"v": r.version, "amt": r.amount, "pct": r.discount_pct, "seq": seq}


Sign = Callable[..., str]


def confirm_card(v: View, sign: Sign, preview: list[tuple[str, str]]) -> Card:
    chain = " → ".join(f"{n}（{ROLE_LABEL.get(role, role)}）" for role, n in preview)
    r = v.request
    return Card(title=f"确认{KIND_LABEL.get(r.kind, r.kind)}申请 / Confirm {KIND_EN[r.kind]}",
                color="blue", fields=fields(v), text=f"审批流程 / Chain：{chain}",
                buttons=[Button(text="提交 / Submit", style="primary",
                                action=sign("approval.submit", r=r.id)),
                         Button(text="取消 / Cancel",
                                action=sign("approval.cancel", r=r.id))])


def approver_card(v: View, step: ApprovalStep, sign: Sign) -> Card:
    args = {"r": v.request.id, "s": step.seq, "a": step.approver_id, "v": v.request.version,
            "m": v.request.amount, "p": v.request.discount_pct}
    return Card(title=v.title, subtitle=f"{v.requester} 的申请，请审批 / please decide",
                color="orange", fields=fields(v), text=f"流程 / Chain：{v.chain()}",
                buttons=[Button(text="同意 / Approve", style="primary",
                                action=sign("approval.approve", **args)),
                         Button(text="驳回 / Reject", style="danger",
                                action=sign("approval.reject", **args))])


def reason_card(v: View, step: ApprovalStep, sign: Sign, rules: ApprovalRules) -> Card:
    """Reject asks why: a choice of reasons everywhere, and free text where it can be drawn."""
    args = {"r": v.request.id, "s": step.seq, "a": step.approver_id, "v": v.request.version,
            "m": v.request.amount, "p": v.request.discount_pct}
    opts = [Option(value=str(i), text=t.split(" / ")[0]) for i, t in
            enumerate(rules.reject_reasons)]
    return Card(title=v.title, subtitle="请选择驳回原因 / why reject?", color="red",
                fields=fields(v), text=f"流程 / Chain：{v.chain()}",
                inputs=[Select(name="reason", label="驳回原因 / Reason", options=opts,
                               placeholder="请选择 / choose"),
                        TextInput(name="reason_text", label="补充说明 / Details",
                                  placeholder="可选 / optional", multiline=True)],
                buttons=[Button(text="确认驳回 / Reject", style="danger",
                                action=sign("approval.reject_confirm", **args)),
                         Button(text="返回 / Back", action=sign("approval.back", **args))])


def decided_card(v: View, status: str, color: str = "grey") -> Card:
    return Card(title=v.title, subtitle=f"{v.requester} 的申请", color=color,  # type: ignore
                fields=fields(v), text=f"流程 / Chain：{v.chain()}", status=status)


def mine_title(v: View) -> str:
    r = v.request
    return f"你的{KIND_LABEL.get(r.kind, r.kind)}申请 #{r.id} / your request"


def result_card(v: View, rules: ApprovalRules) -> Card:
    r = v.request
    last = next((s for s in reversed(v.steps) if s.decided_at), None)
    status = STATE_LABEL.get(r.state, r.state)
    if r.state == "rejected" and last is not None:
        status += f" by {v.name(last.decided_by)}：{last.reason or '—'}"
    elif last is not None and last.decided_at:
        status += f" {hhmm(rules, last.decided_at)}"
    color = {"approved": "green", "rejected": "red"}.get(r.state, "grey")
    return Card(title=mine_title(v),
                color=color, fields=fields(v),  # type: ignore[arg-type]
                text=f"流程 / Chain：{v.chain()}", status=status)


def decision_status(v: View, step: ApprovalStep, rules: ApprovalRules) -> str:
    who = v.name(step.decided_by)
    when = hhmm(rules, step.decided_at) if step.decided_at else ""
    if step.state == "approved":
        out = f"已同意 by {who} {when}"
    elif step.state == "rejected":
        out = f"已驳回 by {who} {when}：{step.reason or '—'}"
    else:
        out = f"已处理（{STATE_LABEL.get(v.request.state, v.request.state)}）"
    if step.decided_by is not None and step.approver_id != step.decided_by:
        out += f"（代 {v.name(step.approver_id)}）"
    return out


# -- delivery ----------------------------------------------------------------------------------
class Sink(Protocol):
    async def send(self, target: Target, content: str | Card) -> str: ...

    async def update(self, target: Target, card: Card, card_ref: dict) -> None: ...


async def target_of(session, user_id: int, prefer: str = "") -> Target | None:
    """Where to reach a user: their identity on the preferred platform, else their first."""
    ids = list((await run_sql(session, select(Identity).where(Identity.user_id == user_id)
                                      .order_by(Identity.id))).scalars())
    if not ids:
        return None
    ident = next((i for i in ids if i.platform == prefer), ids[0])
    return Target(platform=ident.platform, app_id=ident.app_id, kind="user",
                  id=ident.external_id)


async def cards_with_refs(session, request_id: int, seq: int
                          ) -> list[tuple[ApprovalCard, dict | None]]:
    """The open cards of a step with each one's platform ref (None until delivered)."""
    rows = (await run_sql(session, select(ApprovalCard, OutboxMessage.status,
                                          OutboxMessage.result)
                          .outerjoin(OutboxMessage,
                                     OutboxMessage.idem_key == ApprovalCard.outbox_key)
                          .where(ApprovalCard.request_id == request_id,
                                 ApprovalCard.seq == seq, col(ApprovalCard.closed).is_(False))
                          .order_by(ApprovalCard.id))).all()
    return [(c, dict(result) if status == "sent" and result else None)
            for c, status, result in rows]


class Notifier:
    def __init__(self, session, sink: Sink, sign: Sign, rules: ApprovalRules, now: datetime,
                 prefer: str = ""):
        self.session = session
        self.sink = sink
        self.sign = sign
        self.rules = rules
        self.now = now
        self.prefer = prefer
        self._targets: dict[int, Target | None] = {}
        self._delegates: dict[int, list[int]] = {}
        self._cards: dict[tuple[int, int], list[tuple[ApprovalCard, dict | None]]] = {}

    async def prefetch(self, v: View, seq: int, approve: bool) -> None:
        """Do the reads a decision's notifications need *before* the decision writes (on
        SQLite the write lock is then held only while writing), in at most three queries."""
        nxt = next((s for s in v.steps if s.seq > seq and s.state == "waiting"), None) \
            if approve else None
        ids = {v.request.requester_id}
        if nxt is not None and nxt.approver_id is not None:
            rows = (await run_sql(self.session, select(ApprovalDelegation.delegate_id).where(
                ApprovalDelegation.delegator_id == nxt.approver_id, ApprovalDelegation.active,
                ApprovalDelegation.until > self.now)
                .order_by(col(ApprovalDelegation.id).desc()))).all()
            self._delegates[nxt.approver_id] = [r[0] for r in rows]
            ids |= {nxt.approver_id, *self._delegates[nxt.approver_id]}
        idents = (await run_sql(self.session, select(Identity).where(
            col(Identity.user_id).in_(ids)).order_by(Identity.id))).scalars().all()
        for uid in ids:
            mine = [i for i in idents if i.user_id == uid]
            ident = next((i for i in mine if i.platform == self.prefer), mine[0] if mine else None)
            self._targets[uid] = None if ident is None else Target(
                platform=ident.platform, app_id=ident.app_id, kind="user", id=ident.external_id)
        self._cards[(v.request.id, seq)] = await cards_with_refs(self.session, v.request.id, seq)

    async def delegates(self, user_id: int) -> list[int]:
        if user_id not in self._delegates:
            self._delegates[user_id] = await sm.delegates_of(self.session, user_id, self.now)
        return self._delegates[user_id]

    async def send_user(self, user_id: int | None, content: str | Card) -> tuple[Target, str
                                                                                 ] | None:
        if user_id is None:
            return None
        if user_id not in self._targets:
            self._targets[user_id] = await target_of(self.session, user_id, self.prefer)
        target = self._targets[user_id]
        if target is None:
            return None
        key = await self.sink.send(target, content)
        return target, key

    async def approver_cards(self, v: View, step: ApprovalStep,
                             also_delegates: bool = True) -> list[int]:
        """The step's approver (and their active delegates) get the card; returns user ids."""
        if step.approver_id is None:
            return []
        who = [step.approver_id]
        if also_delegates:
            who += [d for d in await self.delegates(step.approver_id)
                    if d != v.request.requester_id and d not in who]
        sent = []
        for uid in who:
            await self.card_to(v, step, uid)
            sent.append(uid)
        return sent

    async def card_to(self, v: View, step: ApprovalStep, user_id: int) -> None:
        card = approver_card(v, step, self.sign)
        if user_id != step.approver_id:
            card.subtitle = f"代 {v.name(step.approver_id)} 审批（委托）/ as delegate"
        res = await self.send_user(user_id, card)
        if res is not None:
            target, key = res
            self.session.add(ApprovalCard(request_id=v.request.id, seq=step.seq,
                                          user_id=user_id, target=target.model_dump(mode="json"),
                                          outbox_key=key, created_at=self.now))

    async def close_cards(self, v: View, seq: int, status: str,
                          skip_user: int | None = None) -> None:
        """Make every open card of a step final (delegate copies, escalated ones); the
        tapper's own card is updated through the tap, so ``skip_user``'s are only closed."""
        key = (v.request.id, seq)
        if key not in self._cards:
            self._cards[key] = await cards_with_refs(self.session, v.request.id, seq)
        for c, ref in self._cards.pop(key):
            c.closed = True
            self.session.add(c)
            if c.user_id == skip_user or ref is None:
                continue
            await self.sink.update(Target.model_validate(c.target), decided_card(v, status),
                                   ref)

    async def tell_requester(self, v: View, text: str | None = None) -> None:
        if v.request.state in sm.FINAL:
            await self.send_user(v.request.requester_id, result_card(v, self.rules))
        elif text:
            await self.send_user(v.request.requester_id, text)

    async def after_decision(self, v: View, step: ApprovalStep,
                             skip_user: int | None = None) -> None:
        """Everything that follows one decision, except updating the tapped card."""
        status = decision_status(v, step, self.rules)
        await self.close_cards(v, step.seq, status, skip_user)
        nxt = v.current()
        if nxt is not None:
            await self.approver_cards(v, nxt)
            await self.tell_requester(
                v, f"你的申请 {v.summary()}：{v.name(step.decided_by)} 已同意，"
                   f"等待 {v.name(nxt.approver_id)} 审批。\n流程：{v.chain()}")
        else:
            await self.tell_requester(v)
