"""The dashboard's forecast panel (issue 17 §4, §6): for the scope, this month, next month and
this quarter, per team and per rep — won so far, weighted forecast, commit, best case, the won
target and forecast ÷ target — and each team's stage probabilities with their basis (learned
from N closed deals, or the defaults). Three server-drawn charts: forecast vs target vs won by
Monday snapshot, attainment per rep beside the elapsed share, and each team's forecast accuracy
over the last six closed months (weighted vs commit). Thin: ``sales.forecast`` and
``sales.forecast_history`` compute; this module picks the scope's rows and draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

from markupsafe import Markup
from sqlmodel import select

from sales.forecast import OPEN, Forecast, Probabilities, company_forecast
from sales.forecast_history import AccuracyPoint, accuracy_trend, closed_months, weekly
from sales.periods import Period
from sales.targets import team_target, user_targets
from storage.models import User
from webapp.charts import Bar, Series, bar_chart, line_chart
from webapp.render import money

SALES_ROLES = ("rep", "manager")
NO_TEAM = "未分组 No team"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


@dataclass
class Row:
    """One team's or rep's forecast of a period beside its won target."""

    id: int
    name: str
    fc: Forecast
    target: float | None

    @property
    def ratio(self) -> float | None:  # weighted forecast ÷ target
        return self.fc.weighted / self.target if self.target else None


@dataclass
class PeriodForecast:
    key: str  # month | next_month | quarter
    label: str
    period: Period
    total: Row
    teams: list[Row]
    people: list[Row]
    probabilities: list[tuple[str, Probabilities]]  # (team name, its stage probabilities)


@dataclass
class Panel:
    periods: list[PeriodForecast]
    charts: dict[str, Markup] = field(default_factory=dict)
    accuracy: list[tuple[int, str, list[AccuracyPoint], str]] = field(default_factory=list)
    stages: tuple[str, ...] = OPEN


def _sum_target(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return sum(found) if found else None


async def _period(db, key: str, label: str, period: Period, today: date, tz: ZoneInfo,
                  ids: list[int], names: dict[int, str], team_of: dict[int, int | None],
                  teams: dict[int, str]) -> PeriodForecast:
    cf = await company_forecast(db, period, today, tz, owners=ids)
    targets = await user_targets(db, ids, period, "won")
    people = [Row(u, names[u], cf.people[u], targets.get(u)) for u in ids if u in cf.people]
    team_rows = [Row(t, teams[t], cf.teams[t], (await team_target(db, t, period, "won")).value)
                 for t in sorted(cf.teams) if t in teams]
    # the scope's target: the shown teams' (an explicit team target wins over its members'),
    # plus the targets of people in scope whose team is not shown
    loose = [targets.get(u) for u in ids if team_of.get(u) not in {r.id for r in team_rows}]
    total = Row(0, "合计 Total", cf.total, _sum_target([r.target for r in team_rows] + loose))
    probs = [(teams[t] if t is not None else NO_TEAM, p) for t, p in cf.probabilities.items()
             if t is None or t in teams]
    probs.sort(key=lambda tp: tp[0])
    return PeriodForecast(key, label, period, total, team_rows, people, probs)


def trend_chart(pf: PeriodForecast, points) -> Markup:
    xs = [p.taken_on.strftime("%m-%d") for p in points]

    def series(name: str, vals: list[float]) -> Series:
        return Series(name, tuple(vals), tuple(money(v) for v in vals))

    lines = [series("加权 Weighted", [p.values.get("weighted", 0.0) for p in points]),
             series("承诺 Commit", [p.values.get("commit", 0.0) for p in points]),
             series("已赢 Won (actual)", [p.won for p in points])]
    target = ((pf.total.target, f"目标 Target {money(pf.total.target)}")
              if pf.total.target else None)
    return line_chart(
        xs, lines, f"预测 vs 目标 vs 实际 Forecast vs target vs actual · {pf.period.label}",
        "每周一快照的加权与承诺预测、当日已赢金额与目标线 / each Monday snapshot's weighted "
        "and commit forecast, won to date that day, and the target as a line", target=target,
        empty="本期尚无周一快照 / No Monday snapshots in this period yet")


def attainment_chart(pf: PeriodForecast, today: date) -> Markup:
    elapsed = pf.period.elapsed_share(today)
    with_target = sorted((r for r in pf.people if r.target),
                         key=lambda r: (-(r.fc.won / r.target), r.name))
    bars = [Bar(r.name, r.fc.won / r.target,
                f"{pct(r.fc.won / r.target)} · {money(r.fc.won)} / {money(r.target)}",
                kind="ok" if r.fc.won / r.target >= elapsed else "warn")
            for r in with_target]
    bars += [Bar(r.name, 0, f"无目标 no target · {money(r.fc.won)}")
             for r in sorted((r for r in pf.people if not r.target), key=lambda r: r.name)]
    top = max([1.0, elapsed, *(b.value for b in bars)])
    return bar_chart(
        bars, f"个人达成率 Attainment per rep · {pf.period.label}",
        f"赢单 ÷ 目标，由高到低；虚线为本期已过 {pct(elapsed)} / won ÷ target, highest first; "
        f"the dashed line is the share of the period gone by ({pct(elapsed)})",
        empty="此范围内没有销售人员 / No sales people in this scope", top=top,
        marker=(elapsed, f"已过 {pct(elapsed)} elapsed"))


def _verdict(points: list[AccuracyPoint]) -> str:
    pairs = [(p.by_method.get("weighted"), p.by_method.get("commit")) for p in points]
    pairs = [(w, c) for w, c in pairs if w is not None and c is not None]
    if not pairs:
        return "尚无已结月份的快照 / No snapshots of a closed month yet"
    w = sum(a for a, _ in pairs) / len(pairs)
    c = sum(b for _, b in pairs) / len(pairs)
    best = ("加权更准 weighted was closer" if w > c else "承诺更准 commit was closer" if c > w
            else "两者相同 both the same")
    return f"{len(pairs)} 个月平均 mean of {len(pairs)} months：加权 weighted {pct(w)} · " \
           f"承诺 commit {pct(c)} → {best}"


def accuracy_chart(name: str, points: list[AccuracyPoint], months: list[Period]) -> Markup:
    by = {p.period: p for p in points}

    def series(label: str, method: str) -> Series:
        vals = [by[m].by_method.get(method) if m in by else None for m in months]
        return Series(label, tuple(vals), tuple(pct(v) for v in vals))

    return line_chart(
        [m.start.strftime("%y-%m") for m in months],
        [series("加权 Weighted", "weighted"), series("承诺 Commit", "commit")],
        f"预测准确度 Forecast accuracy · {name}",
        "近 6 个已结月份，每月各周一快照 1 − |预测 − 实际| ÷ 实际 的平均 / last 6 closed months: "
        "mean over the month's Monday snapshots of 1 − |forecast − actual| ÷ actual",
        y_max=1.0, y_fmt=lambda v: f"{100 * v:.0f}%",
        empty="尚无已结月份的快照 / No snapshots of a closed month yet")


async def panel(db, owners: list[int] | None, team_id: int | None, teams: dict[int, str],
                today: date, tz: ZoneInfo) -> Panel:
    """The panel for the dashboard's scope: ``owners`` (None: everyone), the picked team (or
    None) and the teams this user may see (id → name). ``today`` is the company's local day,
    read once by the dashboard."""
    q = select(User.id, User.name, User.team_id).where(User.active,
                                                       User.role.in_(SALES_ROLES))
    if owners is not None:
        q = q.where(User.id.in_(owners or [-1]))
    found = (await db.exec(q.order_by(User.id))).all()
    names = {int(i): n for i, n, _ in found}
    team_of = {int(i): t for i, _, t in found}
    ids = sorted(names)
    shown = {t: n for t, n in teams.items() if team_id is None or t == team_id}
    month = Period.of("month", today)
    quarter = Period.of("quarter", today)
    periods = [await _period(db, key, label, p, today, tz, ids, names, team_of, shown)
               for key, label, p in (
                   ("month", "本月 This month", month),
                   ("next_month", "下月 Next month", Period("month", month.next_start)),
                   ("quarter", "本季度 This quarter", quarter))]
    if owners is None and team_id is None:
        scope, sids = "company", [0]
    else:
        scope, sids = "team", sorted(shown)
    out = Panel(periods)
    for key, pf in (("trend_month", periods[0]), ("trend_quarter", periods[2])):
        out.charts[key] = trend_chart(pf, await weekly(db, scope, sids, pf.period))
    out.charts["attainment"] = attainment_chart(periods[0], today)
    members: dict[int, list[int]] = {t: [] for t in shown}
    for u, t in team_of.items():
        if t in members:
            members[t].append(u)
    members = {t: us for t, us in members.items() if us}
    months = closed_months(today)
    trend = await accuracy_trend(db, members, today, tz)
    for t in sorted(trend, key=lambda t: shown[t]):
        out.accuracy.append((t, shown[t], trend[t], _verdict(trend[t])))
        out.charts[f"accuracy_{t}"] = accuracy_chart(shown[t], trend[t], months)
    return out
