"""Buttons on alert cards (``jobs/alerts.py``): close the loop from the chat.

- 已跟进 ``alert.done``: logs a follow-up (a visit row), resets the clock (deal and customer
  ``last_activity_at``), clears the alert state; a dormant customer is untagged at once.
- 延后 7 天 ``alert.snooze``: no alert for this entity and rule for 7 days.
- 转给… ``alert.reassign`` (managers only): a picker of the manager's people;
  ``alert.reassign_to`` moves the deal/customer and tells the new owner.
- 催款 ``alert.chase`` (invoices): records the chase and notifies finance.

Who may tap: the owner, a manager above the owner, an admin (finance too for 催款). Each
button carries ``r`` (rule), ``k`` (deal | invoice | customer), ``e`` (entity id), signed.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import String
from sqlmodel import select

from bot.ctx import Ctx
from bot.router import Router
from cards import Button, Card, unpack_action
from config.alert_rules import DORMANT_TAG
from handlers.approvals import NOT_BOUND
from handlers.visits import LOCAL_TZ
from jobs.alerts import (
    RunCtx,
    bind_card,
    build_digest,
    overdue_card,
    scan_overdue,
    scan_stale,
    stale_card,
)
from jobs.targets import MANAGER_ROLES, Org, load_org, scalars
from sales.stage_history import change_deal
from storage.alert_models import AlertState
from storage.models import Customer, Deal, Identity, Invoice, OutboxMessage, User, Visit
from storage.prefs import set_pref
from storage.rules import current_alert_rules

router = Router("alerts", group="提醒")
SNOOZE_DAYS = 7


# -- on demand ---------------------------------------------------------------------------------
async def _on_demand(ctx: Ctx) -> RunCtx:
    """The scheduled jobs' context for a run someone asked for now, in this event's session."""
    return RunCtx(session=ctx.session, rules=await current_alert_rules(ctx.session,
                                                                       ctx.settings.rules),
                  now=ctx.clock(), secret=ctx.secret, dialect="", org=await load_org(ctx.session),
                  on_demand=True)


@router.command("提醒", "alerts", help="我的提醒 / my alerts")
async def alerts_now(ctx: Ctx) -> None:
    """The stale-deal and overdue-invoice cards of the scheduled scans, for the asker's own
    deals and invoices (a manager's: their people's too), cooldowns ignored, snoozes kept."""
    if ctx.user is None:
        await ctx.reply(NOT_BOUND)
        return
    rc = await _on_demand(ctx)
    org = rc.org
    mine = {ctx.user.id}
    if ctx.user.role in MANAGER_ROLES:
        mine |= set(org.reports_of(ctx.user.id))
    dest = f"user:{ctx.user.id}"
    sent = 0
    for scan, build in ((scan_stale, stale_card), (scan_overdue, overdue_card)):
        items = [i for i in await scan(rc) if i.owner_id in mine or ctx.user.role == "admin"]
        if items:
            items.sort(key=lambda i: (-i.sort, i.entity_id))
            card_id = hashlib.sha256(f"now:{ctx.event.dedupe_key}:{sent}".encode()).hexdigest()
            await ctx.reply(bind_card(build(rc, dest, items), card_id[:20], ctx.secret))
            sent += 1
    ctx.audit("alerts.on_demand", "user", str(ctx.user.id), cards=sent)
    if not sent:
        await ctx.reply("现在没有需要处理的提醒 👍 / Nothing needs attention right now.")


PLATFORM_WORDS = {"企业微信": "wecom", "企微": "wecom", "wecom": "wecom", "钉钉": "dingtalk",
                  "dingtalk": "dingtalk", "飞书": "feishu", "feishu": "feishu", "lark": "feishu",
                  "自动": "", "auto": ""}
PLATFORM_LABEL = {"wecom": "企业微信", "dingtalk": "钉钉", "feishu": "飞书"}


@router.command("提醒到", "alerts-to", help="发到哪 / alerts to", example="提醒到 飞书")
async def alerts_to(ctx: Ctx) -> None:
    """Where this person's alerts and digests go: a platform they are on, or 自动 (the one
    they wrote from last)."""
    if ctx.user is None:
        await ctx.reply(NOT_BOUND)
        return
    words = ctx.event.text.strip().split()[1:]
    mine = sorted({i.platform for i in await scalars(ctx.session, select(Identity).where(
        Identity.user_id == ctx.user.id))})
    names = "、".join(PLATFORM_LABEL.get(p, p) for p in mine)
    if not words or words[0].lower() not in PLATFORM_WORDS:
        await ctx.reply("用法：`提醒到 飞书` / `提醒到 钉钉` / `提醒到 企业微信` / `提醒到 自动`。"
                        f"你在：{names}。/ usage: `alerts-to feishu|dingtalk|wecom|auto`")
        return
    platform = PLATFORM_WORDS[words[0].lower()]
    if platform and platform not in mine:
        await ctx.reply(f"你还没有绑定{PLATFORM_LABEL[platform]}账号（你在：{names}）。"
                        f"/ You are not on {platform} yet.")
        return
    await set_pref(ctx.session, ctx.user.id, ctx.clock(), alerts_platform=platform)
    ctx.audit("prefs.alerts_platform", "user", str(ctx.user.id), platform=platform or "auto")
    where = PLATFORM_LABEL[platform] if platform else "你最近使用的平台 / where you wrote last"
    await ctx.reply(f"好的，提醒和日报将发到：{where}。/ Alerts and digests now go to "
                    f"{platform or 'the platform you used last'}.")


@router.command("日报", "digest", help="团队日报 / team digest")
async def digest_now(ctx: Ctx) -> None:
    """Today's team digest for the asking manager, now, as the morning job would send it."""
    if ctx.user is None:
        await ctx.reply(NOT_BOUND)
        return
    if ctx.user.role not in MANAGER_ROLES:
        await ctx.reply("日报发给经理；你可以发送 `提醒` 查看自己的提醒。/ The digest is for "
                        "managers: send `alerts` for your own.")
        return
    card = await build_digest(await _on_demand(ctx), ctx.user.id)
    ctx.audit("digest.on_demand", "user", str(ctx.user.id), sent=card is not None)
    await ctx.reply(card if card is not None else
                    "你的团队还没有可汇总的数据。/ Nothing to sum up for your team yet.")


async def _entity(ctx: Ctx):
    """(kind, row, customer, owner_id) of the tapped alert, or None."""
    a = ctx.action.args
    kind, eid = a.get("k"), a.get("e")
    if not isinstance(eid, int):
        return None
    model = {"deal": Deal, "invoice": Invoice, "customer": Customer}.get(kind)
    if model is None:
        return None
    row = await ctx.session.get(model, eid)
    if row is None:
        return None
    if kind == "customer":
        return kind, row, row, row.owner_id
    customer = await ctx.session.get(Customer, row.customer_id)
    owner = row.owner_id if kind == "deal" else None
    if kind == "invoice" and row.deal_id:
        deal = await ctx.session.get(Deal, row.deal_id)
        owner = deal.owner_id if deal else None
    if owner is None and customer is not None:
        owner = customer.owner_id
    return kind, row, customer, owner


def _allowed(org: Org, user: User | None, owner_id: int | None, finance: bool = False) -> bool:
    if user is None or not user.active:
        return False
    if user.role == "admin" or user.id == owner_id:
        return True
    if finance and user.role == "finance":
        return True
    return user.role in MANAGER_ROLES and org.is_manager_of(user.id, owner_id)


async def _state(ctx: Ctx, rule: str, entity_id: int) -> AlertState:
    found = await scalars(ctx.session, select(AlertState).where(
        AlertState.rule == rule, AlertState.entity_id == entity_id))
    st = found[0] if found else None
    if st is None:
        st = AlertState(rule=rule, entity_id=entity_id, updated_at=ctx.clock())
        ctx.session.add(st)
    return st


async def _prepare(ctx: Ctx, finance: bool = False):
    found = await _entity(ctx)
    if found is None:
        ctx.toast("记录不存在 / not found", "error")
        return None
    org = await load_org(ctx.session)
    if not _allowed(org, ctx.user, found[3], finance=finance):
        ctx.toast("无权操作 / not allowed", "error")
        ctx.audit("alert.denied", found[0], found[1].id, name=ctx.action.name)
        return None
    return org, found


async def _redraw(ctx: Ctx, outcome: str) -> None:
    """Update the tapped alert card in place: the tapped item's buttons go, its outcome is
    added; when nothing is left to tap the card is final. The card's current state is its
    latest outbox row (the first send, or the last redraw)."""
    card_id = str(ctx.action.args.get("c") or "")
    if not card_id or ctx.event.action is None:
        return
    rows = (await ctx.session.exec(
        select(OutboxMessage).where(OutboxMessage.platform == ctx.event.platform,
                                    OutboxMessage.message.cast(String).contains(card_id))
        .order_by(OutboxMessage.id.desc()).limit(5))).all()
    cards = [r.message.get("card") for r in rows
             if isinstance(r.message, dict) and isinstance(r.message.get("card"), dict)
             and r.message["card"].get("card_id") == card_id]
    if not cards:
        return
    card = Card.model_validate(cards[0])
    tapped = (ctx.action.args.get("k"), ctx.action.args.get("e"))
    keep = []
    for b in card.buttons:
        try:
            a = unpack_action(ctx.secret, b.action)
        except ValueError:
            continue
        if (a.args.get("k"), a.args.get("e")) != tapped:
            keep.append(b)
    when = ctx.clock().astimezone(LOCAL_TZ).strftime("%H:%M")
    who = ctx.user.name if ctx.user else ""
    text = (card.text + "\n" if card.text else "") + f"✓ {outcome}（{who} {when}）"
    update: dict = {"buttons": keep, "text": text}
    if not keep:
        update["status"] = "已处理 ✓ / done"
    await ctx.update_card(card.model_copy(update=update))


def _label(kind: str, row, customer) -> str:
    cname = customer.name if customer is not None else ""
    if kind == "deal":
        return f"{cname} · {row.title}"
    if kind == "invoice":
        return f"{cname} · 发票 {row.number or row.id}"
    return cname


@router.action("alert.done")
async def done(ctx: Ctx) -> None:
    prepared = await _prepare(ctx)
    if prepared is None:
        return
    _org, (kind, row, customer, _owner) = prepared
    now, rule = ctx.clock(), str(ctx.action.args.get("r", ""))
    ctx.session.add(Visit(user_id=ctx.user.id, customer_id=customer.id if customer else None,
                          deal_id=row.id if kind == "deal" else None, source="alert",
                          summary=f"已跟进（{rule} 预警卡片）", created_at=now))
    if customer is not None:
        customer.last_activity_at = now
        if DORMANT_TAG in (customer.tags or []):
            customer.tags = [t for t in customer.tags if t != DORMANT_TAG]
        dormant = await _state(ctx, "dormant", customer.id)
        dormant.active, dormant.level, dormant.updated_at = False, 0, now
    if kind == "deal":
        row.last_activity_at = now
        st = await _state(ctx, "stale", row.id)
        st.level, st.last_alerted_at, st.snoozed_until, st.updated_at = 0, None, None, now
    elif kind == "invoice":  # the ladder continues, but not before the cooldown
        st = await _state(ctx, "overdue", row.id)
        st.last_alerted_at, st.updated_at = now, now
    ctx.audit("alert.follow_up", kind, row.id, rule=rule)
    ctx.toast(f"已记录跟进：{_label(kind, row, customer)}", "success")
    await _redraw(ctx, f"已跟进：{_label(kind, row, customer)}")


@router.action("alert.snooze")
async def snooze(ctx: Ctx) -> None:
    prepared = await _prepare(ctx)
    if prepared is None:
        return
    _org, (kind, row, customer, _owner) = prepared
    now, rule = ctx.clock(), str(ctx.action.args.get("r", ""))
    if rule not in ("stale", "overdue", "dormant", "health"):
        ctx.toast("未知的提醒 / unknown alert", "error")
        return
    st = await _state(ctx, rule, row.id)
    st.snoozed_until, st.updated_at = now + timedelta(days=SNOOZE_DAYS), now
    ctx.audit("alert.snooze", kind, row.id, rule=rule, days=SNOOZE_DAYS)
    ctx.toast(f"{SNOOZE_DAYS} 天内不再提醒：{_label(kind, row, customer)}", "success")
    await _redraw(ctx, f"延后 {SNOOZE_DAYS} 天：{_label(kind, row, customer)}")


@router.action("alert.reassign")
async def reassign(ctx: Ctx) -> None:
    user = ctx.user
    if user is None or user.role not in MANAGER_ROLES:
        ctx.toast("仅经理可转交 / managers only", "error")
        if ctx.event.action:
            ctx.audit("alert.denied", str(ctx.action.args.get("k", "")),
                      ctx.action.args.get("e", ""), name="alert.reassign")
        return
    prepared = await _prepare(ctx)
    if prepared is None:
        return
    org, (kind, row, customer, owner) = prepared
    people = [org.users[u] for u in org.reports_of(user.id)
              if u != owner and org.users[u].active][:10]
    if not people:
        ctx.toast("没有可转交的同事", "warning")
        return
    await ctx.reply(Card(
        title="转给…", subtitle=_label(kind, row, customer),
        text="选择新的负责人：", buttons=[
            Button(text=p.name, action=ctx.sign("alert.reassign_to", k=kind, e=row.id, u=p.id,
                                                r=str(ctx.action.args.get("r", ""))))
            for p in people]))


@router.action("alert.reassign_to")
async def reassign_to(ctx: Ctx) -> None:
    user = ctx.user
    if user is None or user.role not in MANAGER_ROLES:
        ctx.toast("仅经理可转交 / managers only", "error")
        return
    prepared = await _prepare(ctx)
    if prepared is None:
        return
    org, (kind, row, customer, owner) = prepared
    new_id = ctx.action.args.get("u")
    new = org.users.get(new_id) if isinstance(new_id, int) else None
    if new is None or not (user.role == "admin" or org.is_manager_of(user.id, new.id)):
        ctx.toast("无效的负责人", "error")
        return
    if kind == "invoice":
        ctx.toast("发票不能转交", "error")
        return
    if kind == "deal":  # the owner change is one stage-history row
        await change_deal(ctx.session, row, who=user.id, source="card", owner_id=new.id)
    else:
        row.owner_id = new.id
    ctx.audit("alert.reassign", kind, row.id, old_owner=owner, new_owner=new.id)
    label = _label(kind, row, customer)
    target = org.user_targets.get(new.id)
    if target is not None:
        await ctx.send(target, f"{user.name} 将「{label}」转交给你跟进。")
    ctx.toast(f"已转给 {new.name}", "success")
    await ctx.update_card(Card(title="转给…", subtitle=label, status=f"已转给 {new.name} ✓"))


@router.action("alert.chase")
async def chase(ctx: Ctx) -> None:
    prepared = await _prepare(ctx, finance=True)
    if prepared is None:
        return
    org, (kind, row, customer, owner) = prepared
    if kind != "invoice":
        ctx.toast("只有发票可以催款", "error")
        return
    now = ctx.clock()
    outstanding = float(row.amount) - float(row.paid_amount or 0)
    days = (now.date() - row.due_date).days
    ctx.audit("invoice.chase", "invoice", row.id, outstanding=outstanding, days_overdue=days)
    st = await _state(ctx, "overdue", row.id)
    st.last_alerted_at, st.updated_at = now, now
    label = _label(kind, row, customer)
    sent = 0
    for fid in org.finance_for(owner):
        target = org.user_targets.get(fid)
        if target is not None and fid != ctx.user.id:
            await ctx.send(target, f"催款请求：{label} 逾期 {days} 天，未收 ¥{outstanding:,.2f}"
                                   f"（由 {ctx.user.name} 发起）")
            sent += 1
    ctx.toast(f"已记录催款{'并通知财务' if sent else ''}：{label}", "success")
    await _redraw(ctx, f"已催款{'，已通知财务' if sent else ''}：{label}")
