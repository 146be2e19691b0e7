"""``目标`` / ``target``: a rep's own attainment and pace for this month and quarter — won vs
target beside the period's elapsed share, and collections vs their target. Thin: the figures
are ``sales.attainment``'s; the period comes from the company's local today."""

from __future__ import annotations

from bot.ctx import Ctx
from bot.router import Router
from cards import KV, Card
from handlers.approvals import NOT_BOUND
from jobs.alerts import money
from sales.attainment import attainment
from sales.periods import Period
from storage.rules import current_alert_rules

router = Router("targets", group="其他")
KINDS = (("month", "本月 This month"), ("quarter", "本季度 This quarter"))


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.0f} %"


@router.command("目标", "target", help="达成 / pace")
async def my_target(ctx: Ctx) -> None:
    if ctx.user is None:
        await ctx.reply(NOT_BOUND)
        return
    rules = await current_alert_rules(ctx.session, ctx.settings.rules)
    today = ctx.clock().astimezone(rules.tz).date()
    fields: list[KV] = []
    behind = False
    any_target = False
    for kind, name in KINDS:
        att = await attainment(ctx.session, [ctx.user.id], Period.of(kind, today), today,
                               rules.tz)
        me = att.total
        any_target |= me.won_target is not None or me.collect_target is not None
        goal = money(me.won_target) if me.won_target else "未设目标 no target"
        won = f"{money(me.won)} / {goal}"
        fields.append(KV(label=f"{name} 赢单 Won", value=won))
        fields.append(KV(label=f"{name} 达成 Pace", value=att.label))
        if me.collect_target is not None or me.collected:
            fields.append(KV(label=f"{name} 回款 Collected", value=(
                f"{money(me.collected)} / {money(me.collect_target) if me.collect_target else '—'}"
                f"（{_pct(me.collect_attainment)}）")))
        behind |= att.pace is not None and att.pace < 1
    text = ("" if any_target else "还没有为你设定目标，请联系管理员。/ No target set for you yet: "
            "ask your admin.")
    await ctx.reply(Card(title="我的目标 My target", subtitle=f"{ctx.user.name} · {today}",
                         color="orange" if behind else "green", fields=fields, text=text))
