"""Deal lists the forecast jobs show (issue 17 §5), each one SQL query over indexed rows:

- **The deals that move the number most** (``uncertain_deals``): among the open deals
  expected to close in a period that the rep has not omitted, the largest amount × (1 − p),
  p the stage probability of the owner's team (``sales.forecast.learn``): the money the
  weighted forecast is least sure of. The probabilities become a CASE in the query, so
  the database ranks and limits; no deal list is loaded into Python.
- **Close date passed** (``past_close``): per owner, their open deals whose expected close
  date is before today, oldest first, at most ``limit`` each, with how many there are in all
  (a window over the owner's rows; served by the index on ``deals.expected_close``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Float, and_, case, func, literal, select

from sales.forecast import OPEN, Probabilities
from sales.funnel import _rows
from sales.periods import Period
from storage.models import Customer, Deal

D = Deal.__table__.c
C = Customer.__table__.c


@dataclass(frozen=True)
class DealLine:
    deal_id: int
    owner_id: int
    customer: str
    title: str
    stage: str
    amount: float
    expected_close: date | None
    p: float | None = None  # the stage probability used (uncertain_deals)

    @property
    def uncertain(self) -> float:
        """amount × (1 − p): the part of the amount the weighted forecast may miss."""
        return self.amount * (1 - (self.p or 0.0))


def _probability(probs: dict[int, Probabilities]):
    """p(stage) of each deal's owner as a SQL CASE: one branch per (team's figures, stage);
    owners sharing one ``Probabilities`` (a team) share a branch."""
    groups: dict[int, tuple[Probabilities, list[int]]] = {}
    for owner, p in sorted(probs.items()):
        groups.setdefault(id(p), (p, []))[1].append(owner)
    whens = [(and_(D.owner_id.in_(owners), D.stage == stage),
              literal(float(p.by_stage.get(stage, 0.0)), Float))
             for p, owners in groups.values() for stage in OPEN]
    return case(*whens, else_=literal(0.0, Float)) if whens else literal(0.0, Float)


async def uncertain_deals(db, probs: dict[int, Probabilities], period: Period,
                          limit: int = 3) -> list[DealLine]:
    """The open, not-omitted deals of the owners in ``probs`` (owner → their team's stage
    probabilities) expected to close in ``period``, largest amount × (1 − p) first (ties:
    the older deal)."""
    if not probs:
        return []
    p = _probability(probs)
    uncertain = D.amount * (literal(1.0, Float) - p)
    rows = await _rows(db, select(D.id, D.owner_id, C.name, D.title, D.stage, D.amount,
                                  D.expected_close, p.label("p"))
                       .select_from(Deal.__table__.join(Customer.__table__,
                                                        C.id == D.customer_id))
                       .where(D.owner_id.in_(sorted(probs)), D.stage.in_(OPEN),
                              func.coalesce(D.forecast_category, "pipeline") != "omitted",
                              D.expected_close >= period.start,
                              D.expected_close <= period.end)
                       .order_by(uncertain.desc(), D.id).limit(limit))
    return [DealLine(int(i), int(o), c or "", t or "", s, float(a or 0), ec, float(pp or 0))
            for i, o, c, t, s, a, ec, pp in rows]


async def past_close(db, today: date, owners: list[int] | None = None, limit: int = 10
                     ) -> dict[int, tuple[list[DealLine], int]]:
    """owner → (their open deals whose expected close is before ``today``, oldest first, at
    most ``limit``; how many such deals they have in all). ``owners`` None: everyone."""
    where = [D.stage.in_(OPEN), D.expected_close < today, D.owner_id.is_not(None)]
    if owners is not None:
        if not owners:
            return {}
        where.append(D.owner_id.in_(sorted(set(owners))))
    ranked = (select(D.id, D.owner_id, C.name.label("customer"), D.title, D.stage, D.amount,
                     D.expected_close,
                     func.row_number().over(partition_by=D.owner_id,
                                            order_by=(D.expected_close, D.id)).label("rn"),
                     func.count().over(partition_by=D.owner_id).label("n"))
              .select_from(Deal.__table__.join(Customer.__table__, C.id == D.customer_id))
              .where(*where).subquery())
    r = ranked.c
    rows = await _rows(db, select(r.id, r.owner_id, r.customer, r.title, r.stage, r.amount,
                                  r.expected_close, r.n)
                       .where(r.rn <= limit).order_by(r.owner_id, r.rn))
    out: dict[int, tuple[list[DealLine], int]] = {}
    for i, o, c, t, s, a, ec, n in rows:
        lines, _n = out.setdefault(int(o), ([], int(n)))
        lines.append(DealLine(int(i), int(o), c or "", t or "", s, float(a or 0), ec))
    return out
