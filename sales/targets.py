"""Sales targets (目标): per rep or team, per month / quarter / year, for won amount,
collections (回款) or visits. Versioned: every change is a new ``sales_targets`` row with the
next version (the highest wins) and an audit row; setting the value already in force is a
no-op.

A period's target for a person or team is its explicit target, else the sum of the explicit
targets of the months (for a quarter) or quarters (for a year) inside it. A team's target
defaults to the sum of its members'; an explicit team target wins, and ``TeamTarget.gap``
says how far it is from the members' sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import and_, func
from sqlmodel import select

from sales.periods import Period, start_of
from storage.models import AuditLog, Team, User
from storage.sales_models import SalesTarget

METRICS = ("won", "collected", "visits")
METRIC_NAMES = {"won": "赢单金额 won", "collected": "回款 collections", "visits": "拜访 visits"}
SCOPES = ("user", "team")
SALES_ROLES = ("rep", "manager")


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    ref: str = ""  # "api", "import" … when not a known user
    platform: str = "web"


@dataclass
class TeamTarget:
    team_id: int
    explicit: float | None  # the team's own target (or the sum of its own finer ones)
    members: float | None  # the sum of its members' targets
    value: float | None  # what counts: explicit if set, else the members' sum

    @property
    def gap(self) -> float | None:
        """explicit − members' sum, when both exist."""
        if self.explicit is None or self.members is None:
            return None
        return self.explicit - self.members


Key = tuple[int, str, date]  # (scope id, period kind, period start)


def _check(scope: str, metric: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: one of {', '.join(SCOPES)}")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: one of {', '.join(METRICS)}")


async def explicit(db, scope: str, ids: list[int], metric: str, start: date, end: date
                   ) -> dict[Key, float]:
    """The targets in force (latest version) whose period starts in [start, end]: one query."""
    _check(scope, metric)
    if not ids:
        return {}
    t = SalesTarget
    where = and_(t.scope == scope, t.scope_id.in_(ids), t.metric == metric,
                 t.period_start >= start, t.period_start <= end)
    latest = (select(t.scope_id, t.period_kind, t.period_start,
                     func.max(t.version).label("v"))
              .where(where).group_by(t.scope_id, t.period_kind, t.period_start).subquery())
    rows = (await db.exec(select(t.scope_id, t.period_kind, t.period_start, t.value).join(
        latest, and_(t.scope_id == latest.c.scope_id, t.period_kind == latest.c.period_kind,
                     t.period_start == latest.c.period_start, t.version == latest.c.v))
        .where(where))).all()
    return {(sid, kind, ps): float(v) for sid, kind, ps, v in rows}


def rolled_up(found: dict[Key, float], sid: int, period: Period) -> float | None:
    """The explicit target of ``period``, else the sum of the finer periods inside it."""
    own = found.get((sid, period.kind, period.start))
    if own is not None or period.kind == "month":
        return own
    finer = ([Period("quarter", m) for m in period.months()[::3]] if period.kind == "year"
             else [Period("month", m) for m in period.months()])
    parts = [v for p in finer if (v := rolled_up(found, sid, p)) is not None]
    return sum(parts) if parts else None


async def members(db, team_id: int) -> list[int]:
    """A team's sales heads: its active reps and managers, and its manager."""
    ids = set((await db.exec(select(User.id).where(
        User.team_id == team_id, User.active, User.role.in_(SALES_ROLES)))).all())
    team = await db.get(Team, team_id)
    if team is not None and team.manager_id is not None:
        ids.add(team.manager_id)
    return sorted(ids)


async def user_targets(db, ids: list[int], period: Period, metric: str) -> dict[int, float]:
    found = await explicit(db, "user", ids, metric, period.start, period.end)
    return {i: v for i in ids if (v := rolled_up(found, i, period)) is not None}


async def team_target(db, team_id: int, period: Period, metric: str) -> TeamTarget:
    own = rolled_up(await explicit(db, "team", [team_id], metric, period.start, period.end),
                    team_id, period)
    per_user = await user_targets(db, await members(db, team_id), period, metric)
    summed = sum(per_user.values()) if per_user else None
    return TeamTarget(team_id, own, summed, own if own is not None else summed)


async def set_target(db, *, scope: str, scope_id: int, period: Period, metric: str,
                     value: float, actor: Actor, at: datetime | None = None
                     ) -> SalesTarget | None:
    """A new version when ``value`` differs from the one in force; None when unchanged.
    Adds the row and its audit row; the caller commits."""
    _check(scope, metric)
    if value < 0:
        raise ValueError("目标不能为负 / a target cannot be negative")
    t = SalesTarget
    key = and_(t.scope == scope, t.scope_id == scope_id, t.period_kind == period.kind,
               t.period_start == period.start, t.metric == metric)
    current = (await db.exec(select(t).where(key).order_by(t.version.desc()))).first()
    if current is not None and abs(current.value - value) < 0.005:
        return None
    at = at or datetime.now(UTC)
    row = SalesTarget(scope=scope, scope_id=scope_id, period_kind=period.kind,
                      period_start=period.start, metric=metric, value=float(value),
                      version=(current.version + 1) if current else 1,
                      created_by=actor.user_id, created_at=at)
    db.add(row)
    db.add(AuditLog(at=at, actor_id=actor.user_id, actor_ref=actor.ref,
                    platform=actor.platform, action="target.set", entity=f"target.{scope}",
                    entity_id=str(scope_id),
                    detail={"period": period.kind, "start": period.start.isoformat(),
                            "metric": metric, "old": current.value if current else None,
                            "new": float(value), "version": row.version}))
    return row


def even_split(total: float, n: int) -> list[float]:
    """``total`` in ``n`` parts to the cent that sum exactly to it (the first parts take the
    leftover cents)."""
    if n <= 0:
        return []
    cents = int((Decimal(str(total)) * 100).to_integral_value(ROUND_DOWN))
    base, extra = divmod(cents, n)
    return [(base + (1 if i < extra else 0)) / 100 for i in range(n)]


async def split_quarter(db, team_id: int, quarter: Period, metric: str, actor: Actor,
                        over: str = "grid") -> int:
    """Spread the team's quarter target evenly: ``months`` → the team's three months;
    ``members`` → each member's quarter; ``grid`` → each member × month. Returns rows set."""
    if quarter.kind != "quarter":
        raise ValueError("只能拆分季度目标 / only a quarter can be split")
    total = (await team_target(db, team_id, quarter, metric)).value
    if total is None:
        raise ValueError("团队本季度没有目标 / the team has no target for this quarter")
    people = await members(db, team_id)
    months = quarter.months()
    if over == "months":
        cells = [("team", team_id, Period("month", m), v)
                 for m, v in zip(months, even_split(total, 3), strict=True)]
    elif over == "members":
        cells = [("user", u, quarter, v)
                 for u, v in zip(people, even_split(total, len(people)), strict=True)]
    elif over == "grid":
        parts = even_split(total, len(people) * 3)
        cells = [("user", u, Period("month", m), parts[i * 3 + j])
                 for i, u in enumerate(people) for j, m in enumerate(months)]
    else:
        raise ValueError(f"unknown split {over!r}: months, members or grid")
    n = 0
    for scope, sid, period, v in cells:
        n += await set_target(db, scope=scope, scope_id=sid, period=period, metric=metric,
                              value=v, actor=actor) is not None
    return n


async def copy_last_quarter(db, team_id: int, quarter: Period, metric: str, actor: Actor
                            ) -> int:
    """The previous quarter's targets (team's and members', the quarter and its months) set
    on the same positions of ``quarter``. Returns rows set."""
    if quarter.kind != "quarter":
        raise ValueError("只能复制季度 / only a quarter can be copied")
    prev = quarter.previous()
    shift = {prev.start: quarter.start,
             **dict(zip(prev.months(), quarter.months(), strict=True))}
    n = 0
    for scope, ids in (("team", [team_id]), ("user", await members(db, team_id))):
        found = await explicit(db, scope, ids, metric, prev.start, prev.end)
        for (sid, kind, start), v in sorted(found.items()):
            if kind == "year":
                continue
            n += await set_target(db, scope=scope, scope_id=sid,
                                  period=Period(kind, shift[start]), metric=metric, value=v,
                                  actor=actor) is not None
    return n


def parse_period(kind: str, start: str) -> Period:
    """A period from text: kind month|quarter|year and a date inside it (YYYY-MM-DD or
    YYYY-MM)."""
    text = start.strip()
    d = date.fromisoformat(text + "-01" if len(text) == 7 else text)
    return Period(kind, start_of(kind, d))


__all__ = ["METRICS", "SCOPES", "Actor", "TeamTarget", "copy_last_quarter", "even_split",
           "explicit", "members", "parse_period", "rolled_up", "set_target", "split_quarter",
           "team_target", "user_targets"]
