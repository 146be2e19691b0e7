"""Attainment measures (issue 17), each one SQL aggregate over indexed rows:

- 目标达成率 attainment = won in the period ÷ won target, beside the period's elapsed share
  ("62 % at 50 % of the month"); won = deals now won whose transition into won fell in the
  period (``sales.funnel.close_date``).
- 回款达成率 collection attainment = collected ÷ collection target; collected = payments
  received in the period; collection rate = collected ÷ invoice amounts due in the period.
- 人均单产 won per head = the group's won ÷ its heads (active reps and managers with a won
  target for the period).
- 数据鲜活性 freshness: per rep, the median days since each of their open deals and active
  (not dormant) customers was last updated; worst (stalest) first.

Periods come from a ``today`` passed in, in the company's time zone ``tz``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import String, and_, cast, func, literal, not_, or_, select, union_all

from sales.funnel import _days, _dialect, _rows, closed_between
from sales.periods import Period
from sales.targets import user_targets
from storage.models import Customer, Deal, Invoice, Payment, User

DORMANT_TAG = "休眠客户"  # config.alert_rules.DORMANT_TAG (the tag the dormant scan sets)
OPEN = ("lead", "qualified", "proposal", "negotiation")


def bounds(period: Period, tz: ZoneInfo) -> tuple[datetime, datetime]:
    return (datetime.combine(period.start, time.min, tzinfo=tz),
            datetime.combine(period.next_start, time.min, tzinfo=tz))


def ratio(a: float, b: float | None) -> float | None:
    return a / b if b else None


def pace_label(rate: float | None, elapsed: float, kind: str) -> str:
    """"达成 62 %，本月已过 50 % / 62 % at 50 % of the month"."""
    zh = {"month": "本月", "quarter": "本季度", "year": "本年"}[kind]
    got = "—" if rate is None else f"{rate * 100:.0f} %"
    return f"达成 {got}，{zh}已过 {elapsed * 100:.0f} % / {got} at {elapsed * 100:.0f} % " \
           f"of the {kind}"


@dataclass
class Figures:
    user_id: int | None  # None: the group's total
    won: float
    won_target: float | None
    collected: float
    collect_target: float | None
    due: float

    @property
    def attainment(self) -> float | None:
        return ratio(self.won, self.won_target)

    @property
    def collect_attainment(self) -> float | None:
        return ratio(self.collected, self.collect_target)

    @property
    def collection_rate(self) -> float | None:
        return ratio(self.collected, self.due)


@dataclass
class Attainment:
    period: Period
    elapsed: float  # share of the period gone by at the end of today
    people: list[Figures]
    total: Figures
    heads: int  # active reps and managers with a won target

    @property
    def per_head(self) -> float | None:
        """人均单产: the group's won ÷ heads."""
        return self.total.won / self.heads if self.heads else None

    @property
    def pace(self) -> float | None:
        """Attainment ÷ elapsed share: ≥ 1 is on pace."""
        a = self.total.attainment
        return a / self.elapsed if a is not None and self.elapsed else None

    @property
    def label(self) -> str:
        return pace_label(self.total.attainment, self.elapsed, self.period.kind)


def not_dormant():
    """A customer not tagged dormant (the JSON list as text, with or without \\u escapes)."""
    tags = cast(Customer.tags, String)
    return not_(or_(tags.contains(DORMANT_TAG, autoescape=True),
                    tags.contains(json.dumps(DORMANT_TAG)[1:-1], autoescape=True)))


def _owner():
    return func.coalesce(Deal.owner_id, Customer.owner_id)


async def won_by(db, ids: list[int], t0: datetime, t1: datetime) -> dict[int, float]:
    rows = await _rows(db, select(Deal.owner_id, func.sum(Deal.amount)).where(
        Deal.owner_id.in_(ids), Deal.stage == "won", closed_between(t0, t1))
        .group_by(Deal.owner_id))
    return {int(o): float(v or 0) for o, v in rows}


async def collected_by(db, ids: list[int], t0: datetime, t1: datetime) -> dict[int, float]:
    owner = _owner()
    rows = await _rows(db, select(owner, func.sum(Payment.amount))
                       .select_from(Payment).join(Invoice, Invoice.id == Payment.invoice_id)
                       .join(Customer, Customer.id == Invoice.customer_id)
                       .outerjoin(Deal, Deal.id == Invoice.deal_id)
                       .where(Payment.paid_at >= t0, Payment.paid_at < t1, owner.in_(ids))
                       .group_by(owner))
    return {int(o): float(v or 0) for o, v in rows}


async def due_by(db, ids: list[int], period: Period) -> dict[int, float]:
    owner = _owner()
    rows = await _rows(db, select(owner, func.sum(Invoice.amount))
                       .select_from(Invoice).join(Customer, Customer.id == Invoice.customer_id)
                       .outerjoin(Deal, Deal.id == Invoice.deal_id)
                       .where(Invoice.due_date >= period.start, Invoice.due_date <= period.end,
                              owner.in_(ids))
                       .group_by(owner))
    return {int(o): float(v or 0) for o, v in rows}


async def attainment(db, ids: list[int], period: Period, today: date, tz: ZoneInfo, *,
                     won_target: float | None = None, collect_target: float | None = None
                     ) -> Attainment:
    """Figures per person in ``ids`` and for the group. The group's targets default to the
    sum of its people's; pass a team's effective target (``sales.targets.team_target``) to
    use it instead."""
    ids = sorted(set(ids))
    t0, t1 = bounds(period, tz)
    won, got, due = (await won_by(db, ids, t0, t1), await collected_by(db, ids, t0, t1),
                     await due_by(db, ids, period))
    wt = await user_targets(db, ids, period, "won")
    ct = await user_targets(db, ids, period, "collected")
    people = [Figures(i, won.get(i, 0.0), wt.get(i), got.get(i, 0.0), ct.get(i),
                      due.get(i, 0.0)) for i in ids]
    active = {r[0] for r in await _rows(db, select(User.id).where(
        User.id.in_(ids), User.active, User.role.in_(("rep", "manager"))))} if ids else set()
    total = Figures(None, sum(won.values()),
                    won_target if won_target is not None else (sum(wt.values()) if wt else None),
                    sum(got.values()),
                    collect_target if collect_target is not None else (
                        sum(ct.values()) if ct else None),
                    sum(due.values()))
    return Attainment(period, period.elapsed_share(today), people, total,
                      len([i for i in wt if i in active]))


@dataclass
class Freshness:
    user_id: int
    items: int  # open deals + active customers
    median_days: float


async def freshness(db, ids: list[int], now: datetime) -> list[Freshness]:
    """Per rep, the median days since each open deal and active customer was last updated;
    worst first. One query: the items, ranked per owner, the middle one or two averaged."""
    if not ids:
        return []
    dialect = _dialect(db)
    at = literal(now)
    deals = select(Deal.owner_id.label("owner"),
                   _days(at, Deal.last_activity_at, dialect).label("days")).where(
        Deal.owner_id.in_(ids), Deal.stage.in_(OPEN))
    custs = select(Customer.owner_id.label("owner"), _days(
        at, func.coalesce(Customer.last_activity_at, Customer.created_at), dialect)
        .label("days")).where(Customer.owner_id.in_(ids), not_dormant())
    items = union_all(deals, custs).subquery()
    ranked = select(items.c.owner, items.c.days,
                    func.row_number().over(partition_by=items.c.owner,
                                           order_by=items.c.days).label("rn"),
                    func.count().over(partition_by=items.c.owner).label("n")).subquery()
    rows = await _rows(db, select(ranked.c.owner, func.max(ranked.c.n), func.avg(ranked.c.days))
                       .where(and_(ranked.c.rn >= (ranked.c.n + 1) // 2,
                                   ranked.c.rn <= (ranked.c.n + 2) // 2))
                       .group_by(ranked.c.owner))
    out = [Freshness(int(o), int(n), float(d)) for o, n, d in rows]
    return sorted(out, key=lambda f: (-f.median_days, f.user_id))
