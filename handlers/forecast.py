"""``预测`` / ``forecast``: the rep's own call per deal, from the chat (issue 17 §4).

- ``预测 <客户或商机> <类别>``: set an open deal's forecast category (commit / best case /
  pipeline / omitted, in Chinese or English); several matching deals → a card with one button
  per deal. The reply shows old → new and the owner's forecast of this month.
- ``预测`` alone: my forecast of this month and next (weighted, commit, best case, won so far,
  target) and my open deals expected to close this month with their category.
- ``预计成交 <客户或商机> 2027-03-20`` / ``close <deal> <date>``: the expected close date.

Thin: who may and what changes is ``sales.deal_forecast.update_forecast``; the figures are
``sales.forecast``'s.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from sqlmodel import select

from bot.ctx import Ctx
from bot.router import Router
from cards import KV, Button, Card
from handlers.approvals import NOT_BOUND
from handlers.visits import find_customers
from jobs.alerts import money
from jobs.targets import MANAGER_ROLES, load_org
from sales.attainment import attainment
from sales.deal_forecast import ForecastUpdate, open_deals_for, update_forecast
from sales.forecast import CATEGORIES, CATEGORY_NAMES, OPEN, company_forecast, parse_category
from sales.periods import Period
from storage.models import Customer, Deal, User
from storage.rules import current_alert_rules

router = Router("forecast", group="其他")
CLOSE_WORDS = ("预计成交", "close")
MAX_CHOICES = 5
CATEGORY_HELP = ("类别 / categories：" + "、".join(CATEGORY_NAMES[c] for c in CATEGORIES)
                 + "（也可写 承诺 / 乐观 / 管道 / 排除）")
USAGE = ("用法：`预测 华东精密 commit`，或发送 `预测` 查看本月预测。\n"
         "Usage: `forecast <deal> <category>`, or `forecast` for your own.\n" + CATEGORY_HELP)
CLOSE_USAGE = ("用法：`预计成交 华东精密 2027-03-20` / Usage: `close <deal> <YYYY-MM-DD>`")
_DATE = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$")
REFUSED = "你不能修改这个商机（只有负责人、其上级经理或管理员可以）/ Only the owner, their " \
          "manager or an admin may change this deal."
CLOSED = "这个商机已结束，不再预测 / This deal is closed: it is not forecast any more."


def _split_category(words: list[str]) -> tuple[str, str | None]:
    """(deal text, category) from the words after the command: the category is the last one
    or two words (``best case``)."""
    for n in (2, 1):
        if len(words) > n:
            cat = parse_category("".join(words[-n:]))
            if cat is not None:
                return " ".join(words[:-n]), cat
    return " ".join(words), None


def _parse_date(word: str) -> date | None:
    m = _DATE.match(word.strip())
    if not m:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def _today(ctx: Ctx, tz) -> date:
    return ctx.clock().astimezone(tz).date()


async def _owner_scope(ctx: Ctx) -> list[int] | None:
    """Whose deals the asker may name: their own, a manager's people too, everyone (None)
    for an admin or a VP."""
    user = ctx.user
    if user.role in ("admin", "vp"):
        return None
    if user.role in MANAGER_ROLES:
        return [user.id, *(await load_org(ctx.session)).reports_of(user.id)]
    return [user.id]


async def _matches(ctx: Ctx, text: str) -> list[tuple[Deal, str]]:
    cands = await find_customers(ctx, text) if text else []
    deals = await open_deals_for(ctx.session, text, [c.customer_id for c in cands],
                                 await _owner_scope(ctx))
    mine = [(d, n) for d, n in deals if d.owner_id == ctx.user.id]
    return mine or deals


def _fc_line(f) -> str:
    return (f"加权 weighted {money(f.weighted)} · 承诺 commit {money(f.commit)} · "
            f"乐观 best case {money(f.best_case)}")


async def _month_fields(ctx: Ctx, owner_id: int, tz) -> list[KV]:
    today = _today(ctx, tz)
    fc = await company_forecast(ctx.session, Period.of("month", today), today, tz,
                                owners=[owner_id])
    f = fc.people.get(owner_id) or fc.total
    probs = next(iter(fc.probabilities.values()), None)
    out = [KV(label="本月预测 This month", value=_fc_line(f))]
    if probs is not None:
        out.append(KV(label="概率依据 Basis", value=probs.label))
    return out


def _choices_card(ctx: Ctx, deals: list[tuple[Deal, str]], action: str, value: str,
                  shown: str) -> Card:
    """One button per deal, its title first (WeCom cuts a button's text short)."""
    mine = deals[:MAX_CHOICES]
    lines = [f"{i}. {d.title} · {n} · {money(d.amount)} · {d.stage}"
             for i, (d, n) in enumerate(mine, 1)]
    more = len(deals) - MAX_CHOICES
    if more > 0:
        lines.append(f"另有 {more} 个未列出 / {more} more not shown.")
    return Card(title="选择商机 Which deal?", subtitle=shown, color="orange",
                text="找到多个进行中的商机，请选择，或写得更具体（如加上商机名称）。\n"
                     "Several open deals match: tap one, or name the deal.\n" + "\n".join(lines),
                buttons=[Button(text=f"{i}. {d.title}"[:30], action=ctx.sign(action, d=d.id,
                                                                               v=value))
                         for i, (d, _n) in enumerate(mine, 1)])


async def _result_card(ctx: Ctx, res: ForecastUpdate, tz) -> Card:
    deal = res.deal
    customer = await ctx.session.get(Customer, deal.customer_id)
    fields = [KV(label="商机 Deal", value=f"{deal.title} · {customer.name if customer else ''}"),
              KV(label="金额 Amount", value=f"{money(deal.amount)} · {deal.stage}")]
    if "forecast_category" in res.changes:
        old, new = res.changes["forecast_category"]
        fields.append(KV(label="预测类别 Category",
                         value=f"{CATEGORY_NAMES.get(old, old)} → {CATEGORY_NAMES[new]}"))
    else:
        cat = deal.forecast_category or "pipeline"
        fields.append(KV(label="预测类别 Category", value=CATEGORY_NAMES.get(cat, cat)))
    if "expected_close" in res.changes:
        old, new = res.changes["expected_close"]
        fields.append(KV(label="预计成交 Expected close",
                         value=f"{old.isoformat() if old else '—'} → {new.isoformat()}"))
    elif deal.expected_close:
        fields.append(KV(label="预计成交 Expected close", value=deal.expected_close.isoformat()))
    fields += await _month_fields(ctx, deal.owner_id, tz)
    changed = res.status == "changed"
    return Card(title="预测已更新 Forecast updated" if changed else "预测未变 No change",
                color="green" if changed else "grey", fields=fields,
                text="" if changed or deal.expected_close else
                "还没有预计成交日期：发送 `预计成交 客户 2027-03-20` 设置。/ No expected close "
                "date yet: send `close <deal> <date>`.")


async def _apply(ctx: Ctx, deal: Deal | int, **values: Any) -> Card | str:
    res = await update_forecast(ctx.session, deal, ctx.user, source="chat", **values)
    if res.status == "not_found":
        return "没有这个商机 / No such deal."
    if res.status == "refused":
        ctx.audit("deal.forecast.denied", "deal", res.deal.id)
        return REFUSED
    if res.status == "closed":
        return CLOSED
    rules = await current_alert_rules(ctx.session, ctx.settings.rules)
    if res.changes:
        ctx.audit("deal.forecast", "deal", res.deal.id, **res.audit_detail())
        await ctx.session.flush()
    return await _result_card(ctx, res, rules.tz)


async def _set(ctx: Ctx, query: str, action: str, value: str, **values: Any) -> None:
    deals = await _matches(ctx, query)
    if not deals:
        await ctx.reply(f"没有找到“{query}”的进行中商机。/ No open deal matches “{query}”.\n"
                        + (USAGE if action == "forecast.pick" else CLOSE_USAGE))
        return
    if len(deals) > 1:
        await ctx.reply(_choices_card(ctx, deals, action, value, query))
        return
    await ctx.reply(await _apply(ctx, deals[0][0], **values))


@router.command("预测", "forecast", *CLOSE_WORDS, help="预测 / forecast", example="预测")
async def forecast_cmd(ctx: Ctx) -> None:
    """One help line for both (the WeCom help card is at its 512 characters)."""
    if ctx.user is None:
        await ctx.reply(NOT_BOUND)
        return
    first, *words = ctx.event.text.strip().split()
    if first.lower() in CLOSE_WORDS:
        await close_cmd(ctx, words)
        return
    if not words:
        await _my_forecast(ctx)
        return
    query, cat = _split_category(words)
    if cat is None or not query:
        what = (f"没看懂类别“{words[-1]}”。/ Unknown category." if len(words) > 1 else
                "请在客户或商机后写上类别。/ Add a category after the deal.")
        await ctx.reply(what + "\n" + USAGE)
        return
    await _set(ctx, query, "forecast.pick", cat, category=cat)


async def close_cmd(ctx: Ctx, words: list[str]) -> None:
    when = _parse_date(words[-1]) if len(words) >= 2 else None
    if when is None:
        await ctx.reply(CLOSE_USAGE)
        return
    await _set(ctx, " ".join(words[:-1]), "forecast.close", when.isoformat(),
               expected_close=when)


@router.action("forecast.pick", "forecast.close")
async def pick_tap(ctx: Ctx) -> None:
    """A deal chosen on the several-deals card: the same change, the same checks."""
    if ctx.user is None:
        ctx.toast(NOT_BOUND, "error")
        return
    a = ctx.action.args
    did, value = a.get("d"), str(a.get("v") or "")
    if not isinstance(did, int):
        ctx.toast("记录不存在 / not found", "error")
        return
    if ctx.action.name == "forecast.pick":
        if value not in CATEGORIES:
            ctx.toast("类别无效 / bad category", "error")
            return
        out = await _apply(ctx, did, category=value)
    else:
        when = _parse_date(value)
        if when is None:
            ctx.toast("日期无效 / bad date", "error")
            return
        out = await _apply(ctx, did, expected_close=when)
    if isinstance(out, str):
        ctx.toast(out, "error")
        return
    ctx.toast("已更新 ✓ / Updated", "success")
    await ctx.update_card(out.model_copy(update={"status": out.title}))


async def _my_forecast(ctx: Ctx) -> None:
    user: User = ctx.user
    rules = await current_alert_rules(ctx.session, ctx.settings.rules)
    tz = rules.tz
    today = _today(ctx, tz)
    fields: list[KV] = []
    month = Period.of("month", today)
    basis = ""
    for period, name in ((month, "本月 This month"),
                         (Period("month", month.next_start), "下月 Next month")):
        fc = await company_forecast(ctx.session, period, today, tz, owners=[user.id])
        f = fc.people.get(user.id) or fc.total
        att = await attainment(ctx.session, [user.id], period, today, tz)
        goal = att.total.won_target
        fields.append(KV(label=f"{name} 预测 Forecast", value=_fc_line(f)))
        fields.append(KV(label=f"{name} 已赢单 Won", value=(
            f"{money(f.won)} / 目标 target {money(goal) if goal else '—'}")))
        probs = next(iter(fc.probabilities.values()), None)
        basis = probs.label if probs is not None else basis
    if basis:
        fields.append(KV(label="概率依据 Basis", value=basis))
    deals = (await ctx.session.exec(
        select(Deal, Customer.name).join(Customer, Customer.id == Deal.customer_id)
        .where(Deal.owner_id == user.id, Deal.stage.in_(OPEN),
               Deal.expected_close >= month.start, Deal.expected_close <= month.end)
        .order_by(Deal.expected_close, Deal.id).limit(10))).all()
    lines = [f"• {d.expected_close.isoformat()} {n} · {d.title} {money(d.amount)} · "
             f"{CATEGORY_NAMES.get(d.forecast_category or 'pipeline', d.forecast_category)}"
             for d, n in deals]
    text = ("**本月预计成交 Closing this month**\n" + "\n".join(lines)) if lines else \
        "本月没有预计成交的商机。/ No open deal is expected to close this month."
    await ctx.reply(Card(title="我的预测 My forecast", subtitle=f"{user.name} · {today}",
                         fields=fields, text=text + "\n" + "设置：`预测 客户 commit`"))
