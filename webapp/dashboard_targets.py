"""The dashboard's targets panel (issue 17): this month's and this quarter's 目标达成率 per rep
and for the scope with the elapsed share, 回款达成率 beside the collection rate, 人均单产, and
数据鲜活性 (median days since last update, stalest first); and, for the dashboard's period,
time in stage and sales-cycle length from stage history. Thin: ``sales.attainment``/``funnel``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlmodel import select

from sales.attainment import Attainment, Freshness, attainment, freshness
from sales.funnel import closed, time_in_stage
from sales.periods import Period
from sales.targets import team_target
from storage.models import User

SALES_ROLES = ("rep", "manager")


@dataclass
class Panel:
    periods: list[tuple[str, Attainment]]  # (label, figures) for this month and quarter
    names: dict[int, str]
    fresh: list[Freshness]
    stage_days: dict[str, tuple[int, float]]  # the dashboard period: stage → (left, mean days)
    cycle_days: float | None  # mean lead → won of the deals won in the dashboard period


async def panel(db, owners: list[int] | None, team_id: int | None, today: date,
                tz: ZoneInfo, now: datetime, t0: datetime, t1: datetime) -> Panel:
    q = select(User.id, User.name).where(User.active, User.role.in_(SALES_ROLES))
    if owners is not None:
        q = q.where(User.id.in_(owners or [-1]))
    names = {int(i): n for i, n in (await db.exec(q.order_by(User.id))).all()}
    ids = sorted(names)
    out = []
    for kind, label in (("month", "本月 This month"), ("quarter", "本季度 This quarter")):
        period = Period.of(kind, today)
        won_t = collect_t = None
        if team_id is not None:
            won_t = (await team_target(db, team_id, period, "won")).value
            collect_t = (await team_target(db, team_id, period, "collected")).value
        out.append((label, await attainment(db, ids, period, today, tz, won_target=won_t,
                                            collect_target=collect_t)))
    return Panel(out, names, await freshness(db, ids, now),
                 await time_in_stage(db, owners, t0, t1),
                 (await closed(db, owners, t0, t1)).cycle_days)
