"""The sales forecast (issue 17 §4), each figure one SQL aggregate over indexed rows.

- **Stage probabilities, learned**: for a team, among its deals closed (won or lost) in the
  12 months before today, p(stage) = won among the deals that reached the stage ÷ deals that
  reached it (reached as in ``sales.funnel``: the highest ladder stage in the deal's history;
  won is beyond every open stage). With fewer than ``MIN_CLOSED`` closed deals the admin's
  default probabilities are used instead, and ``basis`` says so ("default" vs "learned").
  Learned figures are lightly shrunk toward the defaults (``PRIOR`` pseudo-deals per stage) so
  a stage few deals reached does not swing to 0 or 1.
- **Weighted forecast** of a period = won so far in it + Σ open deals whose expected close
  date falls in it × p(their stage), with the owner's team's probabilities.
- **The reps' call** per deal: ``commit`` / ``best_case`` / ``pipeline`` / ``omitted``.
  commit = won + commit deals; best case = commit + best-case deals; pipeline = won + every
  open deal in the period that is not omitted.
- **Accuracy** of a closed period, per method: for every Monday snapshot taken inside the
  period, 1 − |forecast − actual| ÷ actual (floored at 0); the period's figure is their mean.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, select

from sales.funnel import LADDER, _rows, closed_between
from sales.periods import Period
from storage.models import Deal, User
from storage.sales_models import DealHistory, ForecastSnapshot

OPEN = ("lead", "qualified", "proposal", "negotiation")
CATEGORIES = ("commit", "best_case", "pipeline", "omitted")
CATEGORY_NAMES = {"commit": "承诺 commit", "best_case": "乐观 best case",
                  "pipeline": "管道 pipeline", "omitted": "排除 omitted"}
# what a rep may type after 预测 / forecast <deal>
CATEGORY_WORDS = {"commit": "commit", "承诺": "commit", "确定": "commit",
                  "best": "best_case", "best_case": "best_case", "bestcase": "best_case",
                  "乐观": "best_case", "pipeline": "pipeline", "管道": "pipeline",
                  "omit": "omitted", "omitted": "omitted", "排除": "omitted"}
METHODS = ("weighted", "commit", "best_case", "pipeline")
DEFAULT_PROBABILITIES = {"lead": 0.10, "qualified": 0.25, "proposal": 0.50,
                         "negotiation": 0.75}
MIN_CLOSED = 30  # fewer closed deals in the window than this: the defaults are used
PRIOR = 5.0  # pseudo-deals per stage pulling a learned probability toward the default
WINDOW_DAYS = 365
H = DealHistory.__table__.c
D = Deal.__table__.c


def parse_category(word: str) -> str | None:
    return CATEGORY_WORDS.get(word.strip().lower().replace(" ", "").replace("-", "_"))


@dataclass
class Probabilities:
    by_stage: dict[str, float]
    basis: str  # learned | default
    closed: int  # closed deals the figures were learned from
    reached: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.basis == "learned":
            return (f"按本团队近 12 个月 {self.closed} 个已结商机学习 / learned from "
                    f"{self.closed} closed deals (12 months)")
        return f"已结商机仅 {self.closed} 个（少于 {MIN_CLOSED}），用默认概率 / only " \
               f"{self.closed} closed deals (< {MIN_CLOSED}): default probabilities"


def _bounds(period: Period, tz: ZoneInfo) -> tuple[datetime, datetime]:
    return (datetime.combine(period.start, time.min, tzinfo=tz),
            datetime.combine(period.next_start, time.min, tzinfo=tz))


async def learn(db, owners: list[int], today: date, tz: ZoneInfo,
                defaults: dict[str, float] | None = None) -> Probabilities:
    """Stage probabilities of the deals owned by ``owners`` closed in the 12 months up to the
    end of ``today``: one aggregate (per closed deal its highest ladder rank, then counts of
    (rank, won))."""
    defaults = {**DEFAULT_PROBABILITIES, **(defaults or {})}
    t1 = datetime.combine(today + timedelta(days=1), time.min, tzinfo=tz)
    t0 = t1 - timedelta(days=WINDOW_DAYS)
    rank = case(*[(H.new == s, i) for i, s in enumerate(LADDER)], else_=0)
    per_deal = (select(H.deal_id, func.max(rank).label("rank"),
                       func.max(case((D.stage == "won", 1), else_=0)).label("won"))
                .select_from(DealHistory.__table__.join(Deal.__table__, D.id == H.deal_id))
                .where(H.field == "stage", D.owner_id.in_(owners), closed_between(t0, t1))
                .group_by(H.deal_id).subquery())
    counts = await _rows(db, select(per_deal.c.rank, per_deal.c.won, func.count())
                         .group_by(per_deal.c.rank, per_deal.c.won)) if owners else []
    reached = dict.fromkeys(OPEN, 0)
    won_from = dict.fromkeys(OPEN, 0)
    closed = 0
    for r, won, n in counts:
        closed += int(n)
        for i, stage in enumerate(OPEN):
            if int(r) >= i:
                reached[stage] += int(n)
                won_from[stage] += int(n) if won else 0
    if closed < MIN_CLOSED:
        return Probabilities({s: defaults[s] for s in OPEN}, "default", closed, reached)
    learned = {s: (won_from[s] + PRIOR * defaults[s]) / (reached[s] + PRIOR) for s in OPEN}
    return Probabilities(learned, "learned", closed, reached)


@dataclass
class Forecast:
    """One scope's forecast of one period (amounts in the company's currency)."""

    period: Period
    won: float = 0.0  # already won in the period
    weighted_open: float = 0.0  # Σ open deals closing in the period × p(stage)
    by_category: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CATEGORIES,
                                                                                  0.0))
    basis: str = ""

    @property
    def weighted(self) -> float:
        return self.won + self.weighted_open

    @property
    def commit(self) -> float:
        return self.won + self.by_category["commit"]

    @property
    def best_case(self) -> float:
        return self.commit + self.by_category["best_case"]

    @property
    def pipeline(self) -> float:
        return self.best_case + self.by_category["pipeline"]

    def value(self, method: str) -> float:
        return {"weighted": self.weighted, "commit": self.commit, "best_case": self.best_case,
                "pipeline": self.pipeline}[method]

    def add(self, other: Forecast) -> None:
        self.won += other.won
        self.weighted_open += other.weighted_open
        for k, v in other.by_category.items():
            self.by_category[k] += v
        if other.basis and other.basis not in self.basis.split("+"):
            self.basis = "+".join(b for b in (self.basis, other.basis) if b)


async def forecast_by_owner(db, probs: dict[int, Probabilities], period: Period,
                            tz: ZoneInfo) -> dict[int, Forecast]:
    """Per owner in ``probs`` (owner → their team's probabilities): won so far and the open
    deals expected to close in ``period``. Two grouped queries (won per owner; open amount
    per owner, stage and category), a few rows per owner."""
    owners = sorted(probs)
    out = {o: Forecast(period, basis=probs[o].basis) for o in owners}
    if not owners:
        return out
    t0, t1 = _bounds(period, tz)
    for o, v in await _rows(db, select(D.owner_id, func.sum(D.amount)).where(
            D.owner_id.in_(owners), D.stage == "won", closed_between(t0, t1))
            .group_by(D.owner_id)):
        out[int(o)].won = float(v or 0)
    for o, stage, cat, v in await _rows(db, select(
            D.owner_id, D.stage, D.forecast_category, func.sum(D.amount)).where(
            D.owner_id.in_(owners), D.stage.in_(OPEN),
            D.expected_close >= period.start, D.expected_close <= period.end)
            .group_by(D.owner_id, D.stage, D.forecast_category)):
        f = out[int(o)]
        amount = float(v or 0)
        cat = cat if cat in CATEGORIES else "pipeline"
        f.by_category[cat] += amount
        if cat != "omitted":
            f.weighted_open += amount * probs[int(o)].by_stage.get(stage, 0.0)
    return out


async def team_probabilities(db, teams: dict[int | None, list[int]], today: date,
                             tz: ZoneInfo, defaults: dict[str, float] | None = None
                             ) -> dict[int | None, Probabilities]:
    """Each team's learned probabilities (None: people in no team, learned together)."""
    return {t: await learn(db, ids, today, tz, defaults) for t, ids in teams.items()}


@dataclass
class CompanyForecast:
    period: Period
    people: dict[int, Forecast]
    teams: dict[int, Forecast]
    total: Forecast
    probabilities: dict[int | None, Probabilities]


async def company_forecast(db, period: Period, today: date, tz: ZoneInfo,
                           owners: list[int] | None = None,
                           defaults: dict[str, float] | None = None) -> CompanyForecast:
    """Per rep, per team and for everyone in scope (``owners``; None: every active rep and
    manager)."""
    q = select(User.id, User.team_id).where(User.active)
    if owners is not None:
        q = q.where(User.id.in_(owners or [-1]))
    members: dict[int | None, list[int]] = defaultdict(list)
    for uid, tid in await _rows(db, q):
        members[tid].append(int(uid))
    probs_by_team = await team_probabilities(db, members, today, tz, defaults)
    probs = {u: probs_by_team[t] for t, ids in members.items() for u in ids}
    people = await forecast_by_owner(db, probs, period, tz)
    teams: dict[int, Forecast] = {}
    total = Forecast(period)
    for t, ids in members.items():
        tf = Forecast(period)
        for u in ids:
            tf.add(people[u])
        if t is not None:
            teams[t] = tf
        total.add(tf)
    return CompanyForecast(period, people, teams, total, probs_by_team)


# -- snapshots and accuracy ------------------------------------------------------------------
def monday_of(d: date) -> date:
    return d - timedelta(days=d.weekday())


async def take_snapshot(db, today: date, tz: ZoneInfo, kinds: tuple[str, ...] = ("month",
                                                                                 "quarter"),
                        defaults: dict[str, float] | None = None) -> int:
    """Store the forecast of the current and the next period of each kind, per rep, team and
    the company, as it stands ``today``. A second call the same day stores nothing (the
    first figures stand: snapshots are never recomputed). Returns rows written."""
    exists = await _rows(db, select(func.count()).select_from(ForecastSnapshot).where(
        ForecastSnapshot.taken_on == today))
    if exists[0][0]:
        return 0
    rows: list[ForecastSnapshot] = []
    for kind in kinds:
        cur = Period.of(kind, today)
        for period in (cur, Period(kind, cur.next_start)):
            fc = await company_forecast(db, period, today, tz, defaults=defaults)
            scopes = ([("user", u, f) for u, f in fc.people.items()]
                      + [("team", t, f) for t, f in fc.teams.items()]
                      + [("company", 0, fc.total)])
            for scope, sid, f in scopes:
                for m in METHODS:
                    rows.append(ForecastSnapshot(
                        taken_on=today, scope=scope, scope_id=sid, period_kind=kind,
                        period_start=period.start, method=m, value=round(f.value(m), 2),
                        won=round(f.won, 2), basis=f.basis))
    db.add_all(rows)
    await db.flush()
    return len(rows)


@dataclass
class Accuracy:
    period: Period
    scope: str
    scope_id: int
    method: str
    actual: float
    snapshots: int
    accuracy: float | None  # mean of 1 − |f − a| ÷ a over the snapshots; None if actual is 0


def accuracy_of(forecasts: list[float], actual: float) -> float | None:
    if not forecasts or actual <= 0:
        return None
    return sum(max(0.0, 1 - abs(f - actual) / actual) for f in forecasts) / len(forecasts)


async def accuracy(db, period: Period, today: date, tz: ZoneInfo, scope: str,
                   scope_ids: dict[int, list[int]]) -> list[Accuracy]:
    """Accuracy of a closed ``period`` (None before it ends) for each scope id in
    ``scope_ids`` (scope id → the owners whose won deals make its actual), per method, from
    the Monday snapshots taken inside the period."""
    if today <= period.end:
        return []
    t0, t1 = _bounds(period, tz)
    snaps: dict[tuple[int, str], list[float]] = defaultdict(list)
    for sid, m, v in await _rows(db, select(
            ForecastSnapshot.scope_id, ForecastSnapshot.method, ForecastSnapshot.value).where(
            ForecastSnapshot.scope == scope, ForecastSnapshot.period_kind == period.kind,
            ForecastSnapshot.period_start == period.start,
            ForecastSnapshot.taken_on >= period.start, ForecastSnapshot.taken_on <= period.end,
            ForecastSnapshot.scope_id.in_(list(scope_ids)))):
        snaps[(int(sid), m)].append(float(v))
    all_owners = sorted({o for ids in scope_ids.values() for o in ids})
    won = {int(o): float(v or 0) for o, v in await _rows(db, select(
        D.owner_id, func.sum(D.amount)).where(
        and_(D.owner_id.in_(all_owners), D.stage == "won", closed_between(t0, t1)))
        .group_by(D.owner_id))} if all_owners else {}
    out = []
    for sid, ids in sorted(scope_ids.items()):
        actual = sum(won.get(o, 0.0) for o in ids)
        for m in METHODS:
            fs = snaps.get((sid, m), [])
            if fs:
                out.append(Accuracy(period, scope, sid, m, actual, len(fs),
                                    accuracy_of(fs, actual)))
    return out


async def set_category(session, deal: Deal, category: str) -> tuple[str, str] | None:
    """Set the rep's call on ``deal``; (old, new) when it changed, else None. The caller
    checks who may, audits and commits."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown forecast category {category!r}: one of "
                         f"{', '.join(CATEGORIES)}")
    old = deal.forecast_category or "pipeline"
    if old == category:
        return None
    deal.forecast_category = category
    session.add(deal)
    return old, category
