"""The forecast jobs (issue 17 §5): the Monday forecast card and the close-date reminders.

- ``forecast`` (Mondays, ``schedule.forecast``, default 08:45 local): on a Monday it stores
  the week's forecast snapshot (``sales.forecast.take_snapshot``, once per day), then sends
  each manager (role manager / vp managing someone with a deal or a target) **one card**:
  this month's weighted and commit forecast against the target, won so far, commit vs
  weighted, the three open deals that move the number most, the reps behind pace and the
  basis of the stage probabilities. Outbox key ``forecast:weekly:<dest>:<that week's
  Monday>``: a rerun, a second instance or a catch-up later in the week sends nothing twice.
- ``close_dates`` (daily, ``schedule.close_dates``, default 09:20): each rep with open deals
  whose expected close date has passed gets one card listing them (at most
  ``CLOSE_DATES_MAX``, then "+n more"); key ``forecast:close_dates:<dest>:<local day>``.

Both run under ``jobs.runner.AlertJobs`` (advisory lock + ``job_runs``) in the run's
transaction, and respect quiet hours (held until they end). The figures come from
``sales.forecast``, ``sales.attainment``, ``sales.targets`` and ``sales.forecast_queries``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlmodel.ext.asyncio.session import AsyncSession as ModelSession

from cards import KV, Card
from jobs.alerts import NUMS, STAGE_NAMES, RunCtx, _enqueue, _outbox_row, _short, money
from sales.attainment import attainment
from sales.forecast import Probabilities, company_forecast, monday_of, take_snapshot
from sales.forecast_queries import DealLine, past_close, uncertain_deals
from sales.periods import Period
from sales.targets import team_target
from storage.models import Deal
from storage.sales_models import SalesTarget

FORECAST_ROLES = ("manager", "vp")
TOP_DEALS = 3
CLOSE_DATES_MAX = 10


def _plain(s: str) -> str:
    """A name or title inside the card's markdown-lite: no bold or code markers of its own
    (links and tags are neutralised by the renderers, ``cards.markup``)."""
    return (s or "").replace("*", "＊").replace("`", "＇")


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.0f}%"


@dataclass
class Behind:
    user_id: int
    name: str
    attainment: float
    pace: float  # attainment ÷ elapsed share (< 1: behind)


@dataclass
class WeeklyFigures:
    """What the manager's card shows, as numbers (the tests check these by hand)."""

    manager_id: int
    period: Period
    monday: date
    weighted: float
    commit: float
    won: float
    target: float | None
    elapsed: float
    top: list[DealLine] = field(default_factory=list)
    behind: list[Behind] = field(default_factory=list)
    basis: list[str] = field(default_factory=list)  # labels, one per distinct basis

    @property
    def commit_vs_weighted(self) -> float:
        return self.commit - self.weighted


# -- who gets the card ----------------------------------------------------------------------
async def forecast_managers(rc: RunCtx) -> list[int]:
    """Active managers / VPs managing at least one person who owns a deal or has a target
    (or managing a team with a team target). Two distinct-id queries."""
    owners = set((await rc.session.execute(
        select(Deal.owner_id).where(Deal.owner_id.is_not(None)).distinct())).scalars())
    targets = {(s, int(i)) for s, i in (await rc.session.execute(
        select(SalesTarget.scope, SalesTarget.scope_id).distinct())).all()}
    people = owners | {i for s, i in targets if s == "user"}
    out = []
    for mid in rc.org.managers():
        u = rc.org.users[mid]
        if u.role not in FORECAST_ROLES:
            continue
        team_goal = any(t.manager_id == mid and ("team", t.id) in targets
                        for t in rc.org.teams.values())
        if team_goal or people & set(rc.org.reports_of(mid)):
            out.append(mid)
    return out


# -- the weekly card ------------------------------------------------------------------------
async def weekly_figures(rc: RunCtx, manager_id: int, db: ModelSession) -> WeeklyFigures:
    """This month's figures for the manager and everyone below them. ``db``: a SQLModel
    session on the run's connection (``sales.targets`` reads through ``exec``)."""
    org, today, tz = rc.org, rc.today, rc.rules.tz
    scope = [manager_id] + org.reports_of(manager_id)
    period = Period.of("month", today)
    fc = await company_forecast(rc.session, period, today, tz, owners=scope)
    probs: dict[int, Probabilities] = {}
    for uid in fc.people:
        u = org.users.get(uid)
        p = fc.probabilities.get(u.team_id if u else None)
        if p is not None:
            probs[uid] = p
    managed = [t for t in org.teams.values() if t.manager_id == manager_id]
    goals = [tt.value for t in sorted(managed, key=lambda t: t.id)
             if (tt := await team_target(db, t.id, period, "won")).value is not None]
    att = await attainment(db, scope, period, today, tz,
                           won_target=sum(goals) if goals else None)
    behind = []
    for f in att.people:
        rate = f.attainment
        if rate is None or not att.elapsed or f.user_id is None:
            continue
        pace = rate / att.elapsed
        if pace < 1:
            u = org.users.get(f.user_id)
            behind.append(Behind(f.user_id, u.name if u else str(f.user_id), rate, pace))
    behind.sort(key=lambda b: (b.pace, b.user_id))
    labels = list(dict.fromkeys(p.label for _t, p in sorted(
        fc.probabilities.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))))
    return WeeklyFigures(
        manager_id=manager_id, period=period, monday=monday_of(today),
        weighted=fc.total.weighted, commit=fc.total.commit, won=fc.total.won,
        target=att.total.won_target, elapsed=att.elapsed,
        top=await uncertain_deals(rc.session, probs, period, TOP_DEALS),
        behind=behind, basis=labels)


def weekly_card(rc: RunCtx, f: WeeklyFigures) -> Card:
    org = rc.org
    t = f.target
    cvw = f.commit_vs_weighted
    fields = [
        KV(label="本月目标 target", value=money(t) if t else "未设置 / not set"),
        KV(label="加权预测 weighted",
           value=money(f.weighted) + (f"（{_pct(f.weighted / t)}）" if t else "")),
        KV(label="承诺预测 commit",
           value=money(f.commit) + (f"（{_pct(f.commit / t)}）" if t else "")),
        KV(label="已赢单 won so far",
           value=money(f.won) + (f"（{_pct(f.won / t)}）" if t else "")),
        KV(label="承诺 vs 加权 commit vs weighted",
           value=("+" if cvw >= 0 else "−") + money(abs(cvw))),
        KV(label="本月已过 elapsed", value=_pct(f.elapsed)),
    ]
    lines = ["**影响最大的商机 / deals that move the number most**"]
    if f.top:
        for i, d in enumerate(f.top):
            owner = org.users.get(d.owner_id)
            lines.append(f"{NUMS[i]} {_plain(d.customer)} · {_plain(d.title)}（"
                         f"{STAGE_NAMES.get(d.stage, d.stage)} {_pct(d.p)}）{money(d.amount)}"
                         f"，不确定 {money(d.uncertain)} · {_plain(owner.name if owner else '')}"
                         f" · 预计 {d.expected_close}")
    else:
        lines.append("本月没有预计成交的在途商机 / no open deals closing this month")
    lines.append("**落后进度 / behind pace**")
    if f.behind:
        for b in f.behind:
            lines.append(f"{_plain(b.name)}：达成 {_pct(b.attainment)}，进度 {_pct(b.pace)}"
                         f" / {_pct(b.attainment)} at {_pct(f.elapsed)} of the month")
    else:
        lines.append("无 / none")
    lines.append("**概率依据 / probabilities**")
    lines.extend(f.basis or ["—"])
    return Card(
        title=f"本周预测 · {f.period.label} / weekly forecast",
        subtitle=f"{_plain(org.users[f.manager_id].name)} · {f.monday}",
        color="blue", fields=fields, text="\n".join(lines),
        footer="影响最大 = 本月预计成交、未排除的在途商机中「金额 × (1 − 阶段概率)」最大者 / "
               "moves the number most = open, not-omitted deals closing this month with the "
               "largest amount × (1 − p(stage)); 落后 = 达成率 ÷ 时间进度 < 1",
        card_id=_short(f"forecast:{f.manager_id}:{f.monday}"))


async def run_forecast(rc: RunCtx) -> dict:
    today = rc.today
    if today.weekday() == 0:
        rc.stats["snapshot_rows"] = await take_snapshot(rc.session, today, rc.rules.tz)
    monday = monday_of(today)
    conn = await rc.session.connection()
    db = ModelSession(bind=conn)
    rows = []
    try:
        for mid in await forecast_managers(rc):
            dest = f"user:{mid}"
            target = rc.org.dest_target(dest)
            if target is None:
                rc.stats["unroutable"] += 1
                continue
            card = weekly_card(rc, await weekly_figures(rc, mid, db))
            rows.append(_outbox_row(rc, f"forecast:weekly:{dest}:{monday}", target, card,
                                    rc.rules.quiet_until(rc.now, "info") or rc.now))
    finally:
        await db.close()
    rc.stats["managers"] = len(rows)
    rc.stats["cards"] = await _enqueue(rc, rows)
    return dict(rc.stats)


# -- close date passed ----------------------------------------------------------------------
def close_dates_card(rc: RunCtx, owner_id: int, deals: list[DealLine], total: int) -> Card:
    today = rc.today
    lines = []
    for i, d in enumerate(deals):
        num = NUMS[i] + " " if i < len(NUMS) else ""
        days = (today - d.expected_close).days if d.expected_close else 0
        lines.append(f"{num}{_plain(d.customer)} · {_plain(d.title)}（"
                     f"{STAGE_NAMES.get(d.stage, d.stage)}）预计 {d.expected_close}，"
                     f"已过 {days} 天 · {money(d.amount)}")
    if total > len(deals):
        lines.append(f"…另有 {total - len(deals)} 个 / +{total - len(deals)} more")
    oldest = max(((today - d.expected_close).days for d in deals if d.expected_close),
                 default=0)
    return Card(
        title=f"预计成交日已过 · {total} 个 / close date passed",
        subtitle=f"{_plain(rc.org.users[owner_id].name)} · {rc.day}", color="orange",
        fields=[KV(label="商机 deals", value=str(total)),
                KV(label="最久 oldest", value=f"{oldest} 天 / days")],
        text="\n".join(lines),
        footer="请更新预计成交日或推进阶段，预测才准 / update the close date or the stage so "
               "the forecast stays right",
        card_id=_short(f"close_dates:{owner_id}:{rc.day}"))


async def run_close_dates(rc: RunCtx) -> dict:
    rows = []
    for owner, (deals, total) in sorted((await past_close(
            rc.session, rc.today, limit=CLOSE_DATES_MAX)).items()):
        u = rc.org.users.get(owner)
        if u is None or not u.active:
            continue
        dest = f"user:{owner}"
        target = rc.org.dest_target(dest)
        if target is None:
            rc.stats["unroutable"] += 1
            continue
        rows.append(_outbox_row(rc, f"forecast:close_dates:{dest}:{rc.day}", target,
                                close_dates_card(rc, owner, deals, total),
                                rc.rules.quiet_until(rc.now, "info") or rc.now))
    rc.stats["reps"] = len(rows)
    rc.stats["cards"] = await _enqueue(rc, rows)
    return dict(rc.stats)
