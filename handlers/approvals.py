"""Approvals from chat: ``报价 华东精密 86000 备注…`` → confirm card → submit → approver cards,
one tap to decide, reject with a reason, ``待我审批`` / ``我的申请``, ``委托 张三 至 12-01``.

State changes go through ``storage.approvals`` (the state machine) only; this module parses,
draws (``handlers.approval_cards``) and answers. The tap's answer (toast, card update) is
written to the outbox in the tap's own transaction, so the HTTP ack never waits on a send.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timedelta
from typing import Any

from bot.ctx import Ctx
from bot.event import Target
from bot.router import Router
from cards import KV, Button, Card, Option, Select, TextInput
from config.rules import ApprovalRules, load_rules
from handlers import approval_cards as ac
from jobs.targets import load_org
from storage import approvals as sm

router = Router("approvals", group="审批")

KIND_WORDS = {
    "quote": ("报价", "quote"),
    "discount": ("折扣", "discount"),
    "contract": ("合同", "contract"),
    "new_customer": ("新客户", "newcustomer", "new-customer", "new_customer"),
}
NOT_BOUND = "未找到你的账号，请联系管理员绑定。/ Your account is not set up yet; ask an admin."
_AMOUNT = re.compile(r"^[¥￥]?(\d[\d,]*(?:\.\d+)?)(万|w|W|k|K)?元?$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)\s*[%％]$")
_NOTE_PREFIX = re.compile(r"^(备注|note)\s*[:：]?\s*", re.IGNORECASE)
_DATE = re.compile(r"^(?:(\d{4})[-/.年])?(\d{1,2})[-/.月](\d{1,2})日?$")


# -- small helpers -----------------------------------------------------------------------------
class CtxSink:
    """``handlers.approval_cards.Sink`` over the handler's Ctx (same transaction)."""

    def __init__(self, ctx: Ctx):
        self.ctx = ctx

    async def send(self, target: Target, content: str | Card) -> str:
        await self.ctx.send(target, content)
        return self.ctx.outbox[-1].idem_key

    async def update(self, target: Target, card: Card, card_ref: dict) -> None:
        await self.ctx.update_card(card, card_ref=card_ref, target=target)


def actor(ctx: Ctx) -> sm.Actor:
    ev = ctx.event
    return sm.Actor(ctx.user.id if ctx.user else None, ev.platform, f"{ev.platform}:{ev.sender}")


async def rules_now(ctx: Ctx) -> ApprovalRules:
    return await sm.current_rules(ctx.session, (ctx.settings.rules or {}).get("approvals"))


def rules_of(v: ac.View, fallback: ApprovalRules) -> ApprovalRules:
    """The rule set a request started with (its reject reasons, its clock)."""
    if v.info and v.info.rules:
        try:
            data = {k: val for k, val in v.info.rules.items() if k != "version"}
            return load_rules(data, v.info.rules.get("version", 0))
        except ValueError:
            pass
    return fallback


def notifier(ctx: Ctx, rules: ApprovalRules) -> ac.Notifier:
    return ac.Notifier(ctx.session, CtxSink(ctx), ctx.sign, rules, ctx.clock(),
                       prefer=ctx.event.platform)


def parse_amount(word: str) -> float | None:
    m = _AMOUNT.match(word.strip())
    if not m:
        return None
    value = float(m.group(1).replace(",", ""))
    unit = m.group(2) or ""
    if unit in ("万", "w", "W"):
        value *= 10_000
    elif unit in ("k", "K"):
        value *= 1_000
    return value


def parse_note(words: list[str]) -> str:
    return _NOTE_PREFIX.sub("", " ".join(words).strip()).strip()


def parse_until(word: str, now: datetime, rules: ApprovalRules) -> datetime | None:
    """``12-01`` / ``2026-12-01`` / ``12月1日`` → the end of that day (local); a date already
    past this year means next year."""
    m = _DATE.match(word.strip())
    if not m:
        return None
    today = now.astimezone(rules.tz).date()
    year = int(m.group(1)) if m.group(1) else today.year
    try:
        d = date(year, int(m.group(2)), int(m.group(3)))
        if not m.group(1) and d < today:
            d = date(year + 1, d.month, d.day)
    except ValueError:
        return None
    return datetime.combine(d + timedelta(days=1), time(0), rules.tz)


def usage(kind: str) -> str:
    zh, en = KIND_WORDS[kind][0], KIND_WORDS[kind][1]
    if kind == "new_customer":
        return f"用法 / usage：`{zh} 客户名称 [备注]` · `{en} <name> [note]`"
    if kind == "discount":
        return (f"用法 / usage：`{zh} 客户 15% [备注]` 或 `{zh} 客户 8000` · "
                f"`{en} <customer> <percent%|amount> [note]`")
    return f"用法 / usage：`{zh} 客户 86000 [备注]` · `{en} <customer> <amount> [note]`"


# -- starting a request ------------------------------------------------------------------------
async def start_request(ctx: Ctx, kind: str, words: list[str] | None = None,
                        deal_id: int | None = None) -> None:
    """Parse ``<customer> <amount|percent> [note]`` (from chat, or from the request form) and
    answer with the confirmation card of a new draft. A discount on a customer with several
    open deals asks which one first (``deal_id``: the one picked)."""
    if ctx.user is None:
        await ctx.reply(NOT_BOUND)
        return
    if words is None:
        words = ctx.event.text.strip().split()[1:]
    session, now = ctx.session, ctx.clock()
    amount, discount_pct, discount_amount = 0.0, None, None
    customer = deal = None
    if kind == "new_customer":
        if not words:
            await ctx.reply(usage(kind))
            return
        subject, note = words[0], parse_note(words[1:])
        existing = await sm.find_customer(session, subject)
        if existing is not None and existing.name == subject and await _may_see(
                ctx, existing.owner_id):
            await ctx.reply(f"客户「{subject}」已存在 / customer already exists.")
            return
        # another team's customer: say nothing of it (the request goes on; the approver,
        # who sees both, decides) — an answer must not reveal what is outside one's scope
    else:
        if len(words) < 2:
            await ctx.reply(usage(kind))
            return
        subject, value, note = words[0], words[1], parse_note(words[2:])
        customer = await sm.find_customer(session, subject)
        if customer is None:
            await ctx.reply(f"找不到客户「{subject}」，请检查名称或先提交 `新客户 {subject}`。"
                            f"/ Unknown customer {subject!r}.")
            return
        deals = await sm.open_deals(session, customer.id, ctx.user.id)
        if kind == "discount":
            deals = [d for d in deals if d.amount]
            if deal_id is not None:
                deals = [d for d in deals if d.id == deal_id]
            elif len(deals) > 1:  # a discount off which deal? ask (the newest five)
                await ctx.reply(_which_deal_card(ctx, customer.name, deals[:5], words))
                return
        deal = deals[0] if deals else None
        if kind == "discount" and (deal is None or not deal.amount):
            # a discount is off a deal's amount: without one the request would say "¥0"
            await ctx.reply(f"「{customer.name}」没有进行中的商机，折扣无从计算。请先建立商机，"
                            f"或改用 `报价 {subject} 金额`。/ {customer.name} has no open deal "
                            "to discount.")
            return
        if kind == "discount":
            m = _PERCENT.match(value)
            if m:
                discount_pct = float(m.group(1))
                amount = deal.amount if deal else 0.0
            else:
                discount_amount = parse_amount(value)
                if discount_amount is None:
                    await ctx.reply(usage(kind))
                    return
                amount = deal.amount if deal else 0.0
                if amount:
                    discount_pct = round(discount_amount / amount * 100, 2)
            if discount_pct is not None and not 0 < discount_pct < 100:
                await ctx.reply("折扣应在 0–100% 之间 / discount must be between 0 and 100%.")
                return
        else:
            parsed = parse_amount(value)
            if parsed is None or parsed <= 0:
                await ctx.reply(usage(kind))
                return
            amount = parsed
    req = await sm.create_draft(
        session, requester=ctx.user, kind=kind, amount=amount, discount_pct=discount_pct,
        discount_amount=discount_amount, note=note, subject=subject,
        customer_id=customer.id if customer else None, deal_id=deal.id if deal else None,
        actor=actor(ctx), now=now)
    rules = await rules_now(ctx)
    chain = await sm.resolve_chain(session, ctx.user,
                                   rules.chain_for(kind, amount, discount_pct))
    v = await ac.load_view(session, req.id)
    assert v is not None
    users = await sm.users_by_id(session, [uid for _, uid in chain])
    preview = [(role, users[uid].name if uid in users else "（无人）") for role, uid in chain]
    await ctx.reply(ac.confirm_card(v, ctx.sign, preview))


async def _may_see(ctx: Ctx, owner_id: int | None) -> bool:
    """Is a customer of ``owner_id`` inside the asker's scope (their own, their people's, or
    everyone's for an admin / VP)?"""
    user = ctx.user
    if user is None:
        return False
    if owner_id is None or owner_id == user.id or user.role in ("admin", "vp"):
        return True
    if user.role != "manager":
        return False
    return (await load_org(ctx.session)).is_manager_of(user.id, owner_id)


def _kind_handler(kind: str):
    async def handler(ctx: Ctx) -> None:
        await start_request(ctx, kind)

    handler.__name__ = f"start_{kind}"
    return handler


KIND_HELP = {  # the help card's line: what it asks for, and an example
    "quote": ("报价审批 / quote", "报价 华东精密 86000"),
    "discount": ("折扣审批 / discount", "折扣 华东精密 15%"),
    "contract": ("合同审批 / contract", "合同 华东精密 120万"),
    "new_customer": ("新建客户 / new customer", "新客户 明辉五金"),
}
for _kind, _words in KIND_WORDS.items():
    router.command(*_words, help=KIND_HELP[_kind][0],
                   example=KIND_HELP[_kind][1])(_kind_handler(_kind))


# -- starting from a card ----------------------------------------------------------------------
@router.command("审批", "申请", "approval", help="用表单申请 / by form")
async def request_form(ctx: Ctx) -> None:
    """A form: where the platform draws inputs (Feishu, DingTalk) the request is filled in on
    the card; WeCom draws the kind as buttons and the tap answers with the chat syntax."""
    if ctx.user is None:
        await ctx.reply(NOT_BOUND)
        return
    kinds = [Option(value=k, text=f"{KIND_WORDS[k][0]} / {KIND_WORDS[k][1]}")
             for k in KIND_WORDS]
    await ctx.reply(Card(
        title="发起审批 / new request", text="填写后点「下一步」，确认后才会提交。",
        inputs=[Select(name="kind", label="类型 / Type", options=kinds),
                TextInput(name="customer", label="客户 / Customer", required=True),
                TextInput(name="amount", label="金额或折扣 / Amount or 15%"),
                TextInput(name="note", label="备注 / Note")],
        buttons=[Button(text="下一步 / Next", style="primary",
                        action=ctx.sign("approval.form"))]))


@router.action("approval.form")
async def on_request_form(ctx: Ctx) -> None:
    form = ctx.event.action.form if ctx.event.action else {}
    kind = str(form.get("kind") or "")
    if kind not in KIND_WORDS:
        ctx.toast("请选择类型 / choose a type", "warning")
        return
    words = [str(form.get(k) or "").strip() for k in ("customer", "amount", "note")]
    if kind == "new_customer":
        words = [words[0], words[2]]
    if not words[0] or (kind != "new_customer" and not words[1]):
        ctx.toast("请填写客户和金额 / fill in customer and amount", "warning")
        await ctx.reply(usage(kind))  # WeCom cannot draw text inputs: the chat syntax
        return
    await start_request(ctx, kind, [w for w in words if w])


def _which_deal_card(ctx: Ctx, customer: str, deals: list, words: list[str]) -> Card:
    return Card(
        title="折扣哪个商机？/ Which deal?", subtitle=customer,
        text=f"「{customer}」有 {len(deals)} 个进行中的商机，请选择要打折的一个。",
        buttons=[Button(text=f"{d.title} {ac.money(d.amount)}",
                        action=ctx.sign("approval.pick_deal", d=d.id, w=words))
                 for d in deals])


@router.action("approval.pick_deal")
async def on_pick_deal(ctx: Ctx) -> None:
    deal_id, words = _int(ctx.action.args, "d"), ctx.action.args.get("w")
    if deal_id is None or not isinstance(words, list):
        ctx.toast("无效的选择 / invalid choice", "error")
        return
    await ctx.update_card(Card(title="折扣哪个商机？/ Which deal?", status="已选择 ✓"))
    await start_request(ctx, "discount", [str(w) for w in words], deal_id=deal_id)


# -- taps --------------------------------------------------------------------------------------
def _int(args: dict, key: str) -> int | None:
    try:
        return int(args[key])
    except (KeyError, TypeError, ValueError):
        return None


def _shown(ctx: Ctx) -> dict[str, Any]:
    """What the tapped card showed (signed into its button) plus the card's platform ref."""
    a = dict(ctx.action.args)
    a["action"] = ctx.action.name
    return a


async def _refresh_tapped(ctx: Ctx, v: ac.View | None, seq: int | None,
                          rules: ApprovalRules) -> None:
    """An old or duplicate tap: show the card's current state instead of live buttons."""
    if v is None:
        return
    step = next((s for s in v.steps if s.seq == seq), None)
    if step is not None and step.state in ("approved", "rejected"):
        await ctx.update_card(ac.decided_card(v, ac.decision_status(v, step, rules)))
    elif v.request.state in sm.FINAL or (step is not None and step.state == "skipped"):
        await ctx.update_card(ac.decided_card(
            v, f"已处理（{ac.STATE_LABEL.get(v.request.state, v.request.state)}）"))


async def _refuse(ctx: Ctx, code: str, v: ac.View | None, seq: int | None,
                  rules: ApprovalRules) -> None:
    if code == "stale":
        ctx.toast("已处理 / already handled", "info")
        await _refresh_tapped(ctx, v, seq, rules)
    elif code == "own":
        ctx.toast("不能审批自己的申请 / you cannot approve your own request", "warning")
    elif code == "not_found":
        ctx.toast("申请不存在 / no such request", "error")
    else:
        ctx.toast("你不是当前审批人 / you are not the approver of this step", "error")
        await ctx.reply("你不是这一步的审批人，操作未生效。/ You are not the approver; "
                        "nothing changed.")


@router.action("approval.submit")
async def on_submit(ctx: Ctx) -> None:
    rid = _int(ctx.action.args, "r")
    if ctx.user is None or rid is None:
        ctx.toast(NOT_BOUND, "error")
        return
    rules = await rules_now(ctx)
    out = await sm.submit(ctx.session, rid, actor(ctx), rules, ctx.clock(), shown=_shown(ctx))
    v = await ac.load_view(ctx.session, rid)
    if not out.ok:
        if out.code == "stale" and v is not None:
            ctx.toast("已处理 / already handled")
            await ctx.update_card(Card(title=v.title, fields=ac.fields(v),
                                       text=f"流程 / Chain：{v.chain()}",
                                       status=ac.STATE_LABEL.get(v.request.state, "")))
        else:
            await _refuse(ctx, out.code, v, None, rules)
        return
    assert v is not None and out.next_step is not None
    first = out.next_step
    ctx.toast("已提交 / submitted", "success")
    await ctx.update_card(Card(title=ac.mine_title(v), fields=ac.fields(v),
                               text=f"流程 / Chain：{v.chain()}",
                               status=f"已提交 ✓ 等待 {v.name(first.approver_id)} 审批"))
    await notifier(ctx, rules).approver_cards(v, first)


@router.action("approval.cancel")
async def on_cancel(ctx: Ctx) -> None:
    rid = _int(ctx.action.args, "r")
    if ctx.user is None or rid is None:
        ctx.toast(NOT_BOUND, "error")
        return
    rules = await rules_now(ctx)
    out = await sm.cancel(ctx.session, rid, actor(ctx), ctx.clock(), shown=_shown(ctx))
    v = await ac.load_view(ctx.session, rid)
    if not out.ok:
        await _refuse(ctx, out.code, v, None, rules)
        return
    assert v is not None
    ctx.toast("已撤回 / cancelled")
    await ctx.update_card(Card(title=v.title, fields=ac.fields(v), status="已撤回 / cancelled"))
    n = notifier(ctx, rules)
    for s in v.steps:
        await n.close_cards(v, s.seq, "申请人已撤回 / withdrawn")


async def _decide(ctx: Ctx, approve: bool, reason: str = "") -> None:
    a = ctx.action.args
    rid, seq = _int(a, "r"), _int(a, "s")
    if rid is None or seq is None:
        await _refuse(ctx, "not_found", None, None, await rules_now(ctx))
        return
    # every read first (the view, who gets what, the cards to close), then the decision's
    # writes: on SQLite the write lock is held only for the writes
    v = await ac.load_view(ctx.session, rid)
    if v is not None and v.info is not None and v.info.rules:
        rules = rules_of(v, ApprovalRules())  # the rules the request started with
    else:
        rules = await rules_now(ctx)
    if v is not None and ctx.user is not None:
        v.users.setdefault(ctx.user.id, ctx.user)
    n = notifier(ctx, rules)
    if v is not None:
        await n.prefetch(v, seq, approve)
    out = await sm.decide(ctx.session, rid, seq, actor(ctx), approve, ctx.clock(),
                          reason=reason, shown=_shown(ctx), expected_approver=_int(a, "a"),
                          loaded=(v.request, v.steps) if v is not None else None)
    if not out.ok or v is None or out.step is None:
        await _refuse(ctx, out.code, v, seq, rules)
        return
    step = out.step
    status = ac.decision_status(v, step, rules)
    ctx.toast(status, "success" if approve else "warning")
    await ctx.update_card(ac.decided_card(v, status, "green" if approve else "red"))
    await n.after_decision(v, step, skip_user=ctx.user.id if ctx.user else None)


@router.action("approval.approve")
async def on_approve(ctx: Ctx) -> None:
    await _decide(ctx, True)


async def _check_turn(ctx: Ctx) -> tuple[ac.View | None, int | None, str, ApprovalRules]:
    """Is it the tapper's turn on this step? (no state change: the reject form, back)."""
    a = ctx.action.args
    rid, seq = _int(a, "r"), _int(a, "s")
    rules = await rules_now(ctx)
    v = await ac.load_view(ctx.session, rid) if rid is not None else None
    if v is None:
        return None, seq, "not_found", rules
    rules = rules_of(v, rules)
    step = next((s for s in v.steps if s.seq == seq), None)
    if step is None:
        return v, seq, "not_found", rules
    if ctx.user is not None and ctx.user.id == v.request.requester_id:
        return v, seq, "own", rules
    expected = _int(a, "a")
    if expected is not None and expected != step.approver_id:
        return v, seq, "stale" if ctx.user and ctx.user.id == expected else "forbidden", rules
    if not await sm.may_act(ctx.session, step, ctx.user.id if ctx.user else None,
                            ctx.clock()):
        return v, seq, "forbidden", rules
    if step.state != "pending" or v.request.state != "pending":
        return v, seq, "stale", rules
    return v, seq, "ok", rules


@router.action("approval.reject")
async def on_reject(ctx: Ctx) -> None:
    v, seq, code, rules = await _check_turn(ctx)
    if code != "ok" or v is None:
        await _refuse(ctx, code, v, seq, rules)
        return
    step = next(s for s in v.steps if s.seq == seq)
    await ctx.update_card(ac.reason_card(v, step, ctx.sign, rules))


@router.action("approval.back")
async def on_back(ctx: Ctx) -> None:
    v, seq, code, rules = await _check_turn(ctx)
    if code != "ok" or v is None:
        await _refuse(ctx, code, v, seq, rules)
        return
    step = next(s for s in v.steps if s.seq == seq)
    await ctx.update_card(ac.approver_card(v, step, ctx.sign))


def reject_reason(rules: ApprovalRules, choice: Any, extra: Any) -> str:
    """The reason a rejection records: the chosen rule-set reason (its index, as the card's
    select and the web page's send it) and/or free text; "" when neither was given."""
    choice, extra = str(choice or "").strip(), str(extra or "").strip()[:300]
    picked = ""
    if choice.isdigit() and int(choice) < len(rules.reject_reasons):
        picked = rules.reject_reasons[int(choice)].split(" / ")[0]
    return "：".join(x for x in (picked, extra) if x)


@router.action("approval.reject_confirm")
async def on_reject_confirm(ctx: Ctx) -> None:
    form = ctx.event.action.form if ctx.event.action else {}
    v, seq, code, rules = await _check_turn(ctx)
    if code != "ok":
        await _refuse(ctx, code, v, seq, rules)
        return
    reason = reject_reason(rules, form.get("reason"), form.get("reason_text"))
    if not reason:
        ctx.toast("请选择或填写驳回原因 / choose a reason", "warning")
        return
    await _decide(ctx, False, reason)


# -- queries -----------------------------------------------------------------------------------
@router.command("待我审批", "待审批", "pending", help="等我批的 / to approve")
async def pending_cmd(ctx: Ctx) -> None:
    if ctx.user is None:
        await ctx.reply(NOT_BOUND)
        return
    rows = await sm.pending_for(ctx.session, ctx.user.id, ctx.clock())
    if not rows:
        await ctx.reply("没有待你审批的申请 ✓ / nothing waits for you.")
        return
    rules = await rules_now(ctx)
    n = notifier(ctx, rules)
    lines = []
    for req, step in rows[:20]:
        v = await ac.load_view(ctx.session, req.id)
        assert v is not None
        lines.append(f"{v.summary()} — {v.requester}（第 {step.seq} 步）")
    await ctx.reply(Card(title=f"待我审批 / pending（{len(rows)}）", text="\n".join(lines),
                         footer="下面重新发送了审批卡片 / cards re-sent below"))
    for req, step in rows[:5]:
        v = await ac.load_view(ctx.session, req.id)
        assert v is not None
        await n.card_to(v, step, ctx.user.id)


@router.command("我的申请", "my", "mine", help="申请进度 / my requests")
async def mine_cmd(ctx: Ctx) -> None:
    words = ctx.event.text.strip().lower().split()
    if words[0] == "my" and (len(words) < 2 or not words[1].startswith("request")):
        from handlers.help import understood

        await understood(ctx)
        return
    if ctx.user is None:
        await ctx.reply(NOT_BOUND)
        return
    reqs = await sm.requests_of(ctx.session, ctx.user.id)
    if not reqs:
        await ctx.reply("你还没有提交过申请。/ You have no requests yet.")
        return
    lines = []
    for r in reqs:
        v = await ac.load_view(ctx.session, r.id)
        assert v is not None
        lines.append(f"{v.summary()} — {ac.STATE_LABEL.get(r.state, r.state)}\n  {v.chain()}")
    await ctx.reply(Card(title=f"我的申请 / my requests（{len(reqs)}）", text="\n".join(lines)))


# -- delegation --------------------------------------------------------------------------------
@router.command("委托", "delegate", help="请人代批 / delegate", example="委托 张三 至 12-01")
async def delegate_cmd(ctx: Ctx) -> None:
    if ctx.user is None:
        await ctx.reply(NOT_BOUND)
        return
    words = [w for w in ctx.event.text.strip().split()[1:] if w.lower() not in
             ("至", "到", "until", "to")]
    rules = await rules_now(ctx)
    now = ctx.clock()
    if len(words) < 2:
        await ctx.reply("用法 / usage：`委托 张三 至 12-01` · `delegate <name> until 2026-12-01`")
        return
    delegate = await sm.find_user_by_name(ctx.session, words[0])
    until = parse_until(words[1], now, rules)
    if delegate is None:
        await ctx.reply(f"找不到同事「{words[0]}」/ unknown colleague.")
        return
    if until is None or until <= now:
        await ctx.reply("日期格式：12-01 或 2026-12-01 / date like 12-01.")
        return
    if delegate.id == ctx.user.id:
        await ctx.reply("不能委托给自己 / cannot delegate to yourself.")
        return
    await sm.set_delegation(ctx.session, ctx.user, delegate, until, actor(ctx), now)
    last_day = (until - timedelta(days=1)).astimezone(rules.tz).strftime("%Y-%m-%d")
    await ctx.reply(Card(title="已设置委托 / delegation set", color="green",
                         fields=[KV(label="代理人 / Delegate", value=delegate.name),
                                 KV(label="截至 / Until", value=f"{last_day}（含）")],
                         text="期间你的审批也会发给代理人，你们任一人处理即可。"))
    n = notifier(ctx, rules)
    sent = 0
    for req, step in await sm.pending_for(ctx.session, ctx.user.id, now):
        if step.approver_id != ctx.user.id or req.requester_id == delegate.id:
            continue
        v = await ac.load_view(ctx.session, req.id)
        assert v is not None
        await n.card_to(v, step, delegate.id)
        sent += 1
    await n.send_user(delegate.id, f"{ctx.user.name} 已委托你代为审批，截至 {last_day}。"
                                   + (f"现有 {sent} 个待审批。" if sent else ""))


@router.command("取消委托", "undelegate", help="结束代批 / undelegate")
async def undelegate_cmd(ctx: Ctx) -> None:
    if ctx.user is None:
        await ctx.reply(NOT_BOUND)
        return
    n = await sm.end_delegation(ctx.session, ctx.user.id, actor(ctx), ctx.clock())
    await ctx.reply("已取消委托 ✓ / delegation ended." if n else "当前没有委托 / none active.")


# -- admin: rules ------------------------------------------------------------------------------
def _rule_line(rule, prefix: str = "") -> str:
    w = rule.when
    cond = ["/".join(w.kinds)]
    if w.amount_gte is not None:
        cond.append(f"≥{w.amount_gte:,.0f}")
    if w.amount_lt is not None:
        cond.append(f"<{w.amount_lt:,.0f}")
    if w.discount_gt is not None:
        cond.append(f"折扣>{w.discount_gt:g}%")
    chain = " → ".join(ac.ROLE_LABEL.get(x, x) for x in rule.steps)
    return f"{prefix}{' '.join(cond)} → {chain}"


def rules_card(rules: ApprovalRules, saved: bool) -> Card:
    lines = [_rule_line(r) for r in rules.chains]
    lines += [_rule_line(r, "另加 / plus: ") for r in rules.extra]
    return Card(
        title=f"审批规则 v{rules.version} / approval rules" + (" ✓ 已保存" if saved else ""),
        text="\n".join(lines),
        fields=[KV(label="提醒 / Remind", value=f"{rules.remind_after_h:g} 工作小时"),
                KV(label="升级 / Escalate", value=f"{rules.escalate_after_h:g} 工作小时"),
                KV(label="工作时间 / Hours",
                   value=f"{rules.work_start:%H:%M}–{rules.work_end:%H:%M}"),
                KV(label="免打扰 / Quiet",
                   value=f"{rules.quiet_start:%H:%M}–{rules.quiet_end:%H:%M}")])


@router.command("审批规则", "approval-rules", help="看规则 / rules")
async def rules_cmd(ctx: Ctx) -> None:
    """``审批规则`` shows the rules in force; ``审批规则 {json}`` (admins) merges the JSON into
    them and stores a new version; requests in flight keep the version they started with."""
    if ctx.user is None:
        await ctx.reply(NOT_BOUND)
        return
    rules = await rules_now(ctx)
    text = ctx.event.text.strip()
    arg = text[len(text.split()[0]):].strip()
    if arg:
        if ctx.user.role != "admin":
            await ctx.reply("只有管理员可以修改审批规则。/ Admins only.")
            return
        try:
            change = json.loads(arg)
            if not isinstance(change, dict):
                raise ValueError("a JSON object is expected")
            value = {**rules.model_dump(mode="json", exclude={"version"}), **change}
            rules = await sm.save_rules(ctx.session, value, actor(ctx), ctx.clock())
        except ValueError as exc:  # bad JSON or a rule that fails validation: nothing saved
            await ctx.reply(f"规则无效，未保存 / invalid rules, not saved：{str(exc)[:300]}")
            return
    await ctx.reply(rules_card(rules, bool(arg)))
