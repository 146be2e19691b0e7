"""The funnel read from stage history (``deal_history``), not from deals' current stages.

- reached(stage): deals whose history, up to the period's end, entered that ladder stage or a
  later one (won counts as beyond every open stage; lost as none: a deal created lost reached
  only ``lead``); every deal reached ``lead``. conversion(N) = reached(N) ÷ reached(N−1).
- time in stage: for each stage left in the period, the mean days from entering it to the next
  stage transition of the same deal.
- closed: deals now won/lost whose (latest) transition into that stage fell in the period —
  the won/lost date is the transition's date. Sales cycle = mean days from a won deal's first
  history row to that transition.

Each figure is one SQL aggregate; ``owners`` is the list of deal owners in scope (None: all).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, false, func, select, true

from storage.models import Deal
from storage.sales_models import DealHistory

LADDER = ("lead", "qualified", "proposal", "negotiation", "won")
CLOSED = ("won", "lost")
H = DealHistory.__table__.c
D = Deal.__table__.c


@dataclass
class Reach:
    stage: str
    reached: int
    conversion: float | None  # reached(this) / reached(previous); None for the first


@dataclass
class Closed:
    won: int
    won_amount: float
    lost: int
    lost_amount: float
    cycle_days: float | None  # mean lead → won, for the deals won in the period


def _owned(owners: list[int] | None):
    if owners is None:
        return true()
    return D.owner_id.in_(owners) if owners else false()


def _days(later, earlier, dialect: str):
    if dialect == "sqlite":
        return func.julianday(later) - func.julianday(earlier)
    return func.extract("epoch", later - earlier) / 86400.0


def _dialect(db) -> str:
    bind = db.get_bind() if hasattr(db, "get_bind") else db
    return bind.dialect.name


async def _rows(db, stmt):
    """Rows of ``stmt`` on a SQLModel session (``exec``) or a Core connection."""
    res = await (db.exec(stmt) if hasattr(db, "exec") else db.execute(stmt))
    return res.all()


async def reach(db, owners: list[int] | None, t1: datetime) -> list[Reach]:
    rank = case(*[(H.new == s, i) for i, s in enumerate(LADDER)], else_=None)
    per_deal = (select(H.deal_id, func.max(rank).label("rank"))
                .select_from(DealHistory.__table__.join(Deal.__table__, D.id == H.deal_id))
                .where(H.field == "stage", H.at < t1, _owned(owners))
                .group_by(H.deal_id).subquery())
    counts: dict[int | None, int] = {}
    for r, n in await _rows(db, select(per_deal.c.rank, func.count()).group_by(per_deal.c.rank)):
        counts[None if r is None else int(r)] = int(n)
    total = sum(counts.values())
    out: list[Reach] = []
    prev = None
    for i, stage in enumerate(LADDER):
        reached = total if i == 0 else sum(n for r, n in counts.items()
                                           if r is not None and r >= i)
        out.append(Reach(stage, reached, (reached / prev if prev else None) if i else None))
        prev = reached
    return out


async def time_in_stage(db, owners: list[int] | None, t0: datetime, t1: datetime
                        ) -> dict[str, tuple[int, float]]:
    """{stage: (transitions out of it in the period, mean days spent in it)}."""
    nxt = func.lead(H.at).over(partition_by=H.deal_id, order_by=(H.at, H.id))
    steps = (select(H.new.label("stage"), H.at.label("at"), nxt.label("next_at"))
             .select_from(DealHistory.__table__.join(Deal.__table__, D.id == H.deal_id))
             .where(H.field == "stage", H.at < t1, _owned(owners)).subquery())
    days = _days(steps.c.next_at, steps.c.at, _dialect(db))
    rows = await _rows(db, select(steps.c.stage, func.count(), func.avg(days))
                       .where(steps.c.next_at >= t0, steps.c.next_at < t1)
                       .group_by(steps.c.stage))
    return {s: (int(n), float(d or 0)) for s, n, d in rows}


def close_date():
    """When a won/lost deal closed: its latest transition into its current stage; a deal with
    no such history row (written by raw SQL outside ``sales.stage_history``) falls back to its
    last update. Correlated on ``deals``; served by ix_deal_history_deal_field_at."""
    h = DealHistory.__table__.alias("hc")
    return func.coalesce(
        select(func.max(h.c.at)).where(h.c.deal_id == D.id, h.c.field == "stage",
                                       h.c.new == D.stage).scalar_subquery(),
        D.last_activity_at)


def start_date():
    """When a deal entered the funnel: its first stage row, else its creation."""
    h = DealHistory.__table__.alias("hs")
    return func.coalesce(
        select(func.min(h.c.at)).where(h.c.deal_id == D.id, h.c.field == "stage")
        .scalar_subquery(), D.created_at)


def closed_between(t0: datetime, t1: datetime):
    at = close_date()
    return and_(D.stage.in_(CLOSED), at >= t0, at < t1)


async def closed(db, owners: list[int] | None, t0: datetime, t1: datetime) -> Closed:
    won = D.stage == "won"
    cycle = _days(close_date(), start_date(), _dialect(db))
    rows = await _rows(db, select(
        func.count(case((won, 1))), func.sum(case((won, D.amount), else_=0)),
        func.count(case((~won, 1))), func.sum(case((~won, D.amount), else_=0)),
        func.avg(case((won, cycle)))).where(closed_between(t0, t1), _owned(owners)))
    w, wa, lo, la, cyc = rows[0]
    return Closed(int(w or 0), float(wa or 0), int(lo or 0), float(la or 0),
                  None if cyc is None else float(cyc))
