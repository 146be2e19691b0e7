"""A location message in chat is a check-in (签到): it goes onto the visit the rep filed just
before it, or waits for the visit filed just after (``sales.location_checkin``). The answer
says how far from the customer ("距客户 120 m", marked past the radius, never refused) and,
when the customer has no position yet, offers to set it from this check-in (``checkin.pin``:
the customer's owner, a manager above them or an admin may).

DingTalk's robot receives no location messages: there the check-in comes from the mini-app.
"""

from __future__ import annotations

from bot.ctx import Ctx
from bot.router import Router
from cards import Button, Card
from handlers.approvals import NOT_BOUND
from jobs.targets import load_org
from sales.checkin import DEFAULT_RADIUS_M, Point
from sales.location_checkin import WINDOW, place, set_customer_position
from storage.models import Customer, Visit

router = Router("location", group="拜访")
UNREADABLE = ("没能读出这条位置消息的坐标，请重新发送位置。/ Could not read that location: "
              "send it again.")


def _radius(ctx: Ctx) -> float:
    return float(getattr(ctx.settings, "checkin_radius_m", DEFAULT_RADIUS_M) or DEFAULT_RADIUS_M)


@router.message("location")
async def location(ctx: Ctx) -> None:
    loc = ctx.event.location
    if loc is None:
        await ctx.reply(UNREADABLE)
        return
    if ctx.user is None:
        await ctx.reply(f"收到位置：{loc.label} ({loc.lat:.5f}, {loc.lon:.5f})\n{NOT_BOUND}")
        return
    placed = await place(ctx.session, ctx.user.id, Point(loc.lat, loc.lon, loc.system),
                         ctx.clock(), _radius(ctx))
    minutes = int(WINDOW.total_seconds() // 60)
    if placed.visit is None:
        ctx.audit("visit.position_held", "user", ctx.user.id, label=loc.label[:80])
        await ctx.reply(Card(
            title="已收到位置 Location received", subtitle=loc.label,
            text=f"{minutes} 分钟内记下的下一条拜访会带上这个位置。/ Your next visit filed within "
                 f"{minutes} min takes this position.", color="blue"))
        return
    visit, customer, ci = placed.visit, placed.customer, placed.checkin
    ctx.audit("visit.checkin", "visit", visit.id, lat=visit.lat, lng=visit.lng,
              system=visit.coord_system,
              distance_m=round(ci.distance_m, 1) if ci else None, far=bool(ci and ci.far))
    name = customer.name if customer else "?"
    buttons: list[Button] = []
    if ci is None:
        text = "客户还没有坐标。/ The customer has no position yet."
        if placed.customer_needs_position:
            buttons.append(Button(text="设为客户位置 Set as the customer's position",
                                  action=ctx.sign("checkin.pin", v=visit.id), style="primary"))
    elif ci.far:
        text = f"{ci.label}（超出 {round(ci.radius_m)} m 范围 / outside the radius）"
    else:
        text = ci.label
    await ctx.reply(Card(title="已签到 Checked in", subtitle=f"{name} · {loc.label}".strip(" ·"),
                         text=text, color="orange" if ci and ci.far else "green",
                         buttons=buttons))


@router.action("checkin.pin")
async def pin(ctx: Ctx) -> None:
    user = ctx.user
    visit = await ctx.session.get(Visit, int(ctx.action.args.get("v", 0) or 0))
    customer = await ctx.session.get(Customer, visit.customer_id) \
        if visit is not None and visit.customer_id else None
    if user is None or visit is None or customer is None:
        ctx.toast("这条拜访已不存在 / that visit is gone", "error")
        return
    org = await load_org(ctx.session)
    allowed = (user.role == "admin" or customer.owner_id == user.id
               or visit.user_id == user.id and customer.owner_id is None
               or org.is_manager_of(user.id, customer.owner_id))
    if not allowed:
        ctx.audit("checkin.denied", "customer", customer.id, visit=visit.id)
        ctx.toast("只有客户负责人或其经理可以设置 / only the customer's owner or their manager",
                  "error")
        return
    if not set_customer_position(customer, visit):
        ctx.toast("客户已有坐标，未改动 / the customer already has a position", "warning")
        return
    ctx.session.add(customer)
    ctx.audit("customer.position", "customer", customer.id, lat=customer.lat,
              lng=customer.lng, system=customer.coord_system, visit=visit.id)
    ctx.toast(f"已设为 {customer.name} 的位置 / position set", "success")
    await ctx.update_card(Card(title="已签到 Checked in", subtitle=customer.name,
                               text="已设为客户位置 ✓ / Set as the customer's position ✓",
                               color="green"))
