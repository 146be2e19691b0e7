"""The forecast's history (issue 17 §6), read back from the stored Monday snapshots:

- **weekly**: for a scope (company, or one or more teams or people summed) and a period, each
  snapshot day's weighted and commit forecast and the won-to-date of that day (the ``won``
  column), oldest first — the "forecast vs target vs actual by week" chart.
- **closed months**: the ``n`` months that ended before ``today``, newest last.
- **accuracy trend**: ``sales.forecast.accuracy`` of each of those months per team, weighted
  vs commit, so a director sees which method has been closer.

Snapshots are never recomputed here: what was stored on a Monday is what is shown.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from sales.forecast import accuracy
from sales.funnel import _rows
from sales.periods import Period, add_months
from storage.sales_models import ForecastSnapshot

S = ForecastSnapshot
TREND_METHODS = ("weighted", "commit")


@dataclass
class WeekPoint:
    taken_on: date
    values: dict[str, float] = field(default_factory=dict)  # method → forecast that day
    won: float = 0.0  # won so far in the period that day


async def weekly(db, scope: str, scope_ids: list[int], period: Period,
                 methods: tuple[str, ...] = TREND_METHODS) -> list[WeekPoint]:
    """The snapshots of ``scope`` (company: ``[0]``; team/user: the ids, summed) for
    ``period``, one point per day a snapshot was taken, oldest first. One grouped query."""
    if not scope_ids:
        return []
    rows = await _rows(db, select(S.taken_on, S.method, func.sum(S.value), func.sum(S.won))
                       .where(S.scope == scope, S.scope_id.in_(scope_ids),
                              S.period_kind == period.kind, S.period_start == period.start,
                              S.method.in_(methods))
                       .group_by(S.taken_on, S.method).order_by(S.taken_on))
    points: dict[date, WeekPoint] = {}
    for day, method, value, won in rows:
        day = day if isinstance(day, date) else date.fromisoformat(str(day))
        p = points.setdefault(day, WeekPoint(day))
        p.values[method] = float(value or 0)
        p.won = float(won or 0)  # the same for every method of a day
    return [points[d] for d in sorted(points)]


def closed_months(today: date, n: int = 6) -> list[Period]:
    """The ``n`` whole months before ``today``'s month, oldest first."""
    cur = Period.of("month", today)
    return [Period("month", add_months(cur.start, -i)) for i in range(n, 0, -1)]


@dataclass
class AccuracyPoint:
    period: Period
    actual: float
    by_method: dict[str, float | None] = field(default_factory=dict)  # None: no actual


async def accuracy_trend(db, teams: dict[int, list[int]], today: date, tz: ZoneInfo,
                         n: int = 6, methods: tuple[str, ...] = TREND_METHODS
                         ) -> dict[int, list[AccuracyPoint]]:
    """Per team (team id → the owners whose won deals make its actual): the accuracy of each
    of the last ``n`` closed months that has snapshots, oldest first."""
    out: dict[int, list[AccuracyPoint]] = defaultdict(list)
    if not teams:
        return {}
    for period in closed_months(today, n):
        found: dict[int, AccuracyPoint] = {}
        for a in await accuracy(db, period, today, tz, "team", teams):
            if a.method in methods:
                p = found.setdefault(a.scope_id, AccuracyPoint(period, a.actual))
                p.by_method[a.method] = a.accuracy
        for tid, p in found.items():
            out[tid].append(p)
    return {t: out.get(t, []) for t in teams}
