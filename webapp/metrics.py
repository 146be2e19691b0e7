"""The dashboard's numbers: each figure is one SQL aggregate (GROUP BY / SUM / CASE), never a
Python loop over all rows, so the page stays fast on a big database (SQLite and PostgreSQL).

Definitions follow ``jobs.alerts.build_digest`` so the morning digest and the dashboard agree:
the same open-deal and unpaid predicates (repeated literally so the partial indexes match), the
same invoice owner (the deal's owner, else the customer's), the same overdue rule
(``paid_at IS NULL AND due_date < today AND paid_amount < amount``) and the same "received"
(payments in the period; when there is no payment row at all, the paid amount of the invoices
due in the period).

Scope: ``Scope.owners`` is the list of user ids whose deals/invoices/customers count (``None``
means everyone); it comes from ``webapp.scope`` plus the team filter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, false, func, or_, true
from sqlmodel import select

from config.alert_rules import AlertRules
from jobs.alerts import OPEN_DEALS, STAGE_NAMES, UNPAID
from sales.funnel import close_date
from sales.funnel import reach as history_reach
from storage.alert_models import CustomerHealth
from storage.models import Customer, Deal, Invoice, Payment, Team, User, Visit
from storage.rules import current_alert_rules
from webapp.scope import visible_team_ids, visible_user_ids

STAGES = ["lead", "qualified", "proposal", "negotiation", "won"]  # the ladder, in order
ALL_STAGES = STAGES + ["lost"]
GRADES = ["A", "B", "C"]
PERIODS = {"month": "本月 This month", "last_month": "上月 Last month",
           "quarter": "本季度 This quarter", "30d": "近30天 Last 30 days",
           "90d": "近90天 Last 90 days", "custom": "自定义 Custom"}
MAX_SPAN_DAYS = 3 * 366
MIN_YEAR, MAX_YEAR = 1970, 2200
SALES_ROLES = ("rep", "manager")  # whose output the per-rep table shows


class FilterError(Exception):
    """A filter the user may not or cannot ask for; the page shows ``message`` with
    ``status`` (400 malformed, 403 not theirs, 404 no such thing)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- filters ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    key: str
    start: date
    end: date  # inclusive
    tz: ZoneInfo

    @property
    def t0(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=self.tz)

    @property
    def t1(self) -> datetime:
        """Exclusive upper bound: local midnight after ``end``."""
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=self.tz)

    def query(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


def _date(q: Any, name: str) -> date:
    raw = (q.get(name) or "").strip()
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise FilterError(400, f"日期 {name} 无效（应为 YYYY-MM-DD）/ '{name}' must be a date "
                               "like 2026-01-31.") from None
    if not MIN_YEAR <= value.year <= MAX_YEAR:  # far dates overflow the UTC conversion
        raise FilterError(400, f"日期 {name} 超出范围（{MIN_YEAR}–{MAX_YEAR}）/ '{name}' is "
                               "out of range.")
    return value


def parse_period(q: Any, today: date, tz: ZoneInfo) -> Period:
    """``period`` = month (default) | last_month | quarter | 30d | 90d | custom; ``from`` and
    ``to`` (ISO dates) imply custom. "This month/quarter" run to today, like the digest."""
    key = (q.get("period") or "").strip() or ("custom" if q.get("from") or q.get("to")
                                              else "month")
    if key not in PERIODS:
        raise FilterError(400, f"未知的期间 / Unknown period: {key[:20]}")
    if key == "month":
        start, end = today.replace(day=1), today
    elif key == "last_month":
        end = today.replace(day=1) - timedelta(days=1)
        start = end.replace(day=1)
    elif key == "quarter":
        start, end = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1), today
    elif key in ("30d", "90d"):
        start, end = today - timedelta(days=int(key[:-1]) - 1), today
    else:
        start, end = _date(q, "from"), _date(q, "to")
        if start > end:
            raise FilterError(400, "开始日期晚于结束日期 / 'from' is after 'to'.")
        if (end - start).days > MAX_SPAN_DAYS:
            raise FilterError(400, "期间最长三年 / The period can be at most three years.")
    return Period(key, start, end, tz)


def parse_id(raw: str, what: str) -> int:
    """A row id from the query string (bounded: SQLite refuses integers beyond 64 bits)."""
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value < 2**31:
        raise FilterError(400, f"{what} 无效 / '{what}' must be a number.")
    return value


@dataclass
class Scope:
    owners: list[int] | None  # None = everyone
    team_id: int | None
    teams: list[Team] = field(default_factory=list)  # the teams this user may pick

    def query(self) -> dict[str, str]:
        return {"team": str(self.team_id)} if self.team_id is not None else {}


async def resolve_scope(db, user: User, team_param: str | None) -> Scope:
    """The owners behind the numbers: everyone this user may see, or one team of theirs."""
    visible = await visible_team_ids(db, user)
    tq = select(Team).order_by(Team.id)
    if visible is not None:
        tq = tq.where(Team.id.in_(sorted(visible)))
    teams = list((await db.exec(tq)).all())
    raw = (team_param or "").strip()
    if not raw:
        users = await visible_user_ids(db, user)
        return Scope(sorted(users) if users is not None else None, None, teams)
    tid = parse_id(raw, "team")
    if visible is not None and tid not in visible:
        raise FilterError(403, "你不能查看这个团队 / You may not see that team.")
    team = await db.get(Team, tid)
    if team is None:
        raise FilterError(404, "没有这个团队 / No such team.")
    ids = set((await db.exec(select(User.id).where(User.team_id == tid))).all())
    if team.manager_id is not None:
        ids.add(team.manager_id)
    return Scope(sorted(ids), tid, teams)


def owned(col, scope: Scope):
    if scope.owners is None:
        return true()
    return col.in_(scope.owners) if scope.owners else false()


def invoice_owner():
    """Who an invoice belongs to (as in the digest): the deal's owner, else the customer's."""
    return func.coalesce(Deal.owner_id, Customer.owner_id)


def invoice_select(*cols):
    return (select(*cols).select_from(Invoice).join(Customer, Customer.id == Invoice.customer_id)
            .outerjoin(Deal, Deal.id == Invoice.deal_id))


def may_see_owner(scope: Scope, owner_id: int | None) -> bool:
    return scope.owners is None or (owner_id is not None and owner_id in scope.owners)


async def load_rules(db, settings) -> AlertRules:
    """As ``jobs.runner.Runner.load_rules``: defaults ← ``[rules.alerts]`` ← latest DB row."""
    return await current_alert_rules(db, settings.rules)


# -- funnel -----------------------------------------------------------------------------------
@dataclass
class StageRow:
    stage: str
    name: str
    count: int
    amount: float
    reached: int | None = None  # deals at or beyond this stage (None off the ladder)
    conversion: float | None = None  # reached(this) / reached(previous)


@dataclass
class Funnel:
    rows: list[StageRow]
    won: int
    lost: int

    @property
    def win_rate(self) -> float | None:
        return self.won / (self.won + self.lost) if self.won + self.lost else None

    def row(self, stage: str) -> StageRow | None:
        return next((r for r in self.rows if r.stage == stage), None)


def closed_in(period: Period):
    """Won/lost deals count in the period their transition into won/lost (stage history) fell
    in; a deal without history falls back to its last update (``sales.funnel.close_date``)."""
    at = close_date()
    return and_(at >= period.t0, at < period.t1)


def stage_filter(stage: str, period: Period):
    if stage in ("won", "lost"):
        return and_(Deal.stage == stage, closed_in(period))
    return Deal.stage == stage


async def funnel(db, scope: Scope, period: Period) -> Funnel:
    """Open stages: the current pipeline (a snapshot); won/lost: closed in the period.

    Conversion is read from stage history (``sales.funnel.reach``, up to the period's end):
    every deal reached ``lead``; a deal reached stage N if its history entered N or a later
    ladder stage (won included; a lost deal counts up to where it was lost). Win rate =
    won / (won + lost)."""
    own = owned(Deal.owner_id, scope)
    counts: dict[str, tuple[int, float]] = {}
    for stage, n, amount in (await db.exec(
            select(Deal.stage, func.count(), func.sum(Deal.amount)).where(own, OPEN_DEALS)
            .group_by(Deal.stage))).all():
        counts[stage] = (int(n), float(amount or 0))
    for stage, n, amount in (await db.exec(
            select(Deal.stage, func.count(), func.sum(Deal.amount))
            .where(own, Deal.stage.in_(["won", "lost"]), closed_in(period))
            .group_by(Deal.stage))).all():
        counts[stage] = (int(n), float(amount or 0))
    rows = [StageRow(s, STAGE_NAMES.get(s, s), *counts.get(s, (0, 0.0)))
            for s in ALL_STAGES]
    rows += [StageRow(s, s, n, a) for s, (n, a) in sorted(counts.items())
             if s not in ALL_STAGES]
    for r, reach in zip(rows[:len(STAGES)], await history_reach(db, scope.owners, period.t1),
                        strict=True):
        r.reached, r.conversion = reach.reached, reach.conversion
    return Funnel(rows, counts.get("won", (0, 0))[0], counts.get("lost", (0, 0))[0])


# -- collections ------------------------------------------------------------------------------
@dataclass
class Collections:
    due_count: int
    due: float
    received: float
    received_source: str  # payments | paid_amount
    overdue_count: int
    overdue: float  # outstanding on overdue invoices
    buckets: list[tuple[int, int, float]]  # (ladder rung in days, count, outstanding)

    @property
    def rate(self) -> float | None:
        return self.received / self.due if self.due else None


def overdue_filter(today: date):
    return and_(UNPAID, Invoice.due_date < today, Invoice.paid_amount < Invoice.amount)


def due_in(period: Period):
    return and_(Invoice.due_date >= period.start, Invoice.due_date <= period.end)


def rung_range(ladder: list[int], rung: int, today: date):
    """Invoices whose days overdue fall on this rung (≥ rung, < the next one)."""
    nxt = [d for d in ladder if d > rung]
    cond = Invoice.due_date <= today - timedelta(days=rung)
    if nxt:
        cond = and_(cond, Invoice.due_date > today - timedelta(days=nxt[0]))
    return cond


async def received_by(db, scope: Scope, period: Period, group_by_owner: bool = False):
    """Payments in the period (total, or per owner). ``None`` total = no payment rows."""
    owner = invoice_owner()
    cols = (owner, func.sum(Payment.amount)) if group_by_owner else (func.sum(Payment.amount),)
    q = (select(*cols).select_from(Payment).join(Invoice, Invoice.id == Payment.invoice_id)
         .join(Customer, Customer.id == Invoice.customer_id)
         .outerjoin(Deal, Deal.id == Invoice.deal_id)
         .where(owned(owner, scope), Payment.paid_at >= period.t0, Payment.paid_at < period.t1))
    if group_by_owner:
        return {o: float(a or 0) for o, a in (await db.exec(q.group_by(owner))).all()}
    return (await db.exec(q)).one()


async def collections(db, scope: Scope, period: Period, today: date,
                      rules: AlertRules) -> Collections:
    own = owned(invoice_owner(), scope)
    due_n, due_amt, paid_amt = (await db.exec(invoice_select(
        func.count(), func.sum(Invoice.amount), func.sum(Invoice.paid_amount))
        .where(own, due_in(period)))).one()
    got = await received_by(db, scope, period)
    source = "payments" if got is not None else "paid_amount"
    received = float(got if got is not None else (paid_amt or 0))
    ladder = rules.overdue.ladder
    # one row of SUM(CASE …) per rung (date arithmetic and GROUP BY on a parameterised CASE
    # are not portable across SQLite and PostgreSQL)
    rungs = ([0] if ladder[0] > 1 else []) + list(ladder)
    cols = []
    for d in rungs:
        cond = (rung_range(ladder, d, today) if d else
                Invoice.due_date > today - timedelta(days=ladder[0]))
        cols += [func.sum(case((cond, 1), else_=0)),
                 func.sum(case((cond, Invoice.amount - Invoice.paid_amount), else_=0))]
    got_rows = (await db.exec(invoice_select(*cols).where(own, overdue_filter(today)))).one()
    rows = [(d, int(got_rows[2 * i] or 0), float(got_rows[2 * i + 1] or 0))
            for i, d in enumerate(rungs)]
    over_n = sum(n for _d, n, _a in rows)
    over_amt = sum(a for _d, _n, a in rows)
    return Collections(int(due_n or 0), float(due_amt or 0), received, source, over_n,
                       over_amt, [r for r in rows if r[0] or r[1]])


# -- stale deals ------------------------------------------------------------------------------
def stale_conditions(rules: AlertRules, now: datetime) -> tuple[Any, Any]:
    """SQL for "yellow or worse" and "red" with the per-stage thresholds of the alert rules
    (the same ones ``jobs.alerts.scan_stale`` applies), so counts need no Python loop."""
    r = rules.stale
    groups = [(Deal.stage == s, t.yellow_days, t.red_days) for s, t in r.per_stage.items()]
    default = Deal.stage.not_in(list(r.per_stage)) if r.per_stage else true()
    groups.append((default, r.yellow_days, r.red_days))
    yellow = or_(*(and_(c, Deal.last_activity_at <= now - timedelta(days=y))
                   for c, y, _r in groups))
    red = or_(*(and_(c, Deal.last_activity_at <= now - timedelta(days=rd))
                for c, _y, rd in groups))
    return and_(OPEN_DEALS, yellow), red


@dataclass
class Stale:
    yellow: int  # yellow but not red
    red: int
    amount: float


async def stale(db, scope: Scope, rules: AlertRules, now: datetime) -> Stale:
    cond, red = stale_conditions(rules, now)
    n, red_n, amount = (await db.exec(select(
        func.count(), func.sum(case((red, 1), else_=0)), func.sum(Deal.amount))
        .where(owned(Deal.owner_id, scope), cond))).one()
    return Stale(int(n or 0) - int(red_n or 0), int(red_n or 0), float(amount or 0))


def severity(rules: AlertRules, stage: str, days: int) -> str:
    th = rules.stale.thresholds(stage)
    return "red" if days >= th.red_days else "yellow" if days >= th.yellow_days else ""


def days_since(now: datetime, at: datetime | None) -> int | None:
    return None if at is None else int((now - at) / timedelta(days=1))


# -- per rep ----------------------------------------------------------------------------------
@dataclass
class RepRow:
    user_id: int
    name: str
    team: str
    visits: int = 0
    new_deals: int = 0
    won: int = 0
    won_amount: float = 0
    received: float = 0
    stale: int = 0


async def sales_people(db, scope: Scope) -> list[tuple[int, str, str]]:
    q = (select(User.id, User.name, Team.name).outerjoin(Team, Team.id == User.team_id)
         .where(User.active == True, User.role.in_(SALES_ROLES),  # noqa: E712
                owned(User.id, scope)).order_by(User.team_id, User.role.desc(), User.id))
    return [(i, n, t or "") for i, n, t in (await db.exec(q)).all()]


async def per_rep(db, scope: Scope, period: Period, rules: AlertRules, now: datetime,
                  received_source: str) -> list[RepRow]:
    people = await sales_people(db, scope)
    ids = [p[0] for p in people]
    if not ids:
        return []
    visits = dict((await db.exec(select(Visit.user_id, func.count()).where(
        Visit.user_id.in_(ids), Visit.created_at >= period.t0, Visit.created_at < period.t1)
        .group_by(Visit.user_id))).all())
    new = dict((await db.exec(select(Deal.owner_id, func.count()).where(
        Deal.owner_id.in_(ids), Deal.created_at >= period.t0, Deal.created_at < period.t1)
        .group_by(Deal.owner_id))).all())
    won = {o: (n, a) for o, n, a in (await db.exec(
        select(Deal.owner_id, func.count(), func.sum(Deal.amount)).where(
            Deal.owner_id.in_(ids), Deal.stage == "won", closed_in(period))
        .group_by(Deal.owner_id))).all()}
    cond, _red = stale_conditions(rules, now)
    stale_by = dict((await db.exec(select(Deal.owner_id, func.count()).where(
        Deal.owner_id.in_(ids), cond).group_by(Deal.owner_id))).all())
    sub = Scope(ids, None)
    if received_source == "payments":
        got = await received_by(db, sub, period, group_by_owner=True)
    else:
        owner = invoice_owner()
        got = {o: float(a or 0) for o, a in (await db.exec(invoice_select(
            owner, func.sum(Invoice.paid_amount)).where(owned(owner, sub), due_in(period))
            .group_by(owner))).all()}
    rows = []
    for uid, name, team in people:
        n, a = won.get(uid, (0, 0))
        rows.append(RepRow(uid, name, team, int(visits.get(uid, 0)), int(new.get(uid, 0)),
                           int(n), float(a or 0), float(got.get(uid, 0)),
                           int(stale_by.get(uid, 0))))
    return rows


# -- health grades ----------------------------------------------------------------------------
@dataclass
class Grades:
    counts: dict[str, int]
    computed_at: datetime | None  # None: the health job has not run yet

    @property
    def computed(self) -> bool:
        return self.computed_at is not None


async def grades(db, scope: Scope) -> Grades:
    """From ``customer_health`` (written by the health job); not recomputed here, so the
    dashboard shows exactly the grades the alerts used."""
    last = (await db.exec(select(func.max(CustomerHealth.computed_at)))).one()
    counts = dict.fromkeys(GRADES, 0)
    for g, n in (await db.exec(
            select(CustomerHealth.grade, func.count())
            .join(Customer, Customer.id == CustomerHealth.customer_id)
            .where(owned(Customer.owner_id, scope)).group_by(CustomerHealth.grade))).all():
        counts[g] = counts.get(g, 0) + int(n)
    return Grades(counts, last)
