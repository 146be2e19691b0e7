"""The forecast jobs (issue 17 §5) on SQLite and PostgreSQL, with ``now=`` passed in: the
Monday card's figures equal hand-computed ones (weighted, commit, won, target, the three
most uncertain deals, reps behind pace, the probabilities' basis); one card per manager
however often and from however many instances the job runs; the snapshot is taken on
Mondays only; the close-date reminder lists each rep's passed deals once a day."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import Session

from jobs.forecast_card import weekly_card
from jobs.runner import DONE, AlertJobs
from jobs.scheduler import JobScheduler
from sales.forecast import DEFAULT_PROBABILITIES
from sales.forecast_queries import past_close, uncertain_deals
from sales.periods import Period
from storage.db import async_engine
from storage.models import Deal, Identity, User
from storage.sales_models import SalesTarget
from tests.alerts.conftest import SECRET

MONDAY = datetime(2026, 6, 15, 2, 0, tzinfo=UTC)  # Monday 15 June, 10:00 Asia/Shanghai
TUESDAY = MONDAY + timedelta(days=1)
JUNE = Period("month", date(2026, 6, 1))


def deal(env, owner: str, stage: str, amount: float, close: date | None,
         category: str = "pipeline", title: str = "", won_days_ago: float = 30) -> int:
    cid = env.customer(f"客户{title or len(env.ids)}")
    env.ids[f"_c{len(env.ids)}"] = cid
    at = MONDAY - timedelta(days=won_days_ago)
    d = env.add(Deal(customer_id=cid, owner_id=env.ids[owner], title=title or f"项目{cid}",
                     stage=stage, amount=amount, expected_close=close,
                     forecast_category=category, last_activity_at=at,
                     created_at=at))  # its history row (into its stage) is dated then
    env.ids[title] = d.id
    return d.id


def seed(env) -> None:
    """华东 (manager 王经理, reps 张三 and 赵六) under VP 钱总; 孙经理 manages 周七, who has
    neither deals nor targets. June targets: team 华东 2,000,000; 张三 1,000,000;
    赵六 400,000. 15 June is half of June (elapsed 0.5)."""
    vp = env.add(User(name="钱总", role="vp"))
    idle_mgr = env.add(User(name="孙经理", role="manager"))
    idle_rep = env.add(User(name="周七", role="rep", manager_id=idle_mgr.id))
    with Session(env.sync) as s:
        s.get(User, env.ids["mgr"]).manager_id = vp.id
        s.commit()
    for u, ext in ((vp, "qianzong"), (idle_mgr, "sunjl"), (idle_rep, "zhouqi")):
        env.add(Identity(user_id=u.id, platform="wecom", app_id="corp1", external_id=ext))
    env.ids.update(vp=vp.id, idle_mgr=idle_mgr.id, idle_rep=idle_rep.id)
    env.add(SalesTarget(scope="team", scope_id=env.ids["team"], period_kind="month",
                        period_start=JUNE.start, metric="won", value=2_000_000),
            SalesTarget(scope="user", scope_id=env.ids["rep"], period_kind="month",
                        period_start=JUNE.start, metric="won", value=1_000_000),
            SalesTarget(scope="user", scope_id=env.ids["rep2"], period_kind="month",
                        period_start=JUNE.start, metric="won", value=400_000))
    # 张三: won 600k in June (on pace: 0.6 ÷ 0.5 = 1.2)
    deal(env, "rep", "won", 300_000, None, title="赢A", won_days_ago=2)
    deal(env, "rep", "won", 300_000, None, title="赢B", won_days_ago=10)
    deal(env, "rep", "won", 999_000, None, title="五月赢单", won_days_ago=20)  # 26 May
    deal(env, "rep", "negotiation", 800_000, date(2026, 6, 25), "commit", title="谈判B")
    deal(env, "rep", "proposal", 600_000, date(2026, 6, 28), title="方案C")
    deal(env, "rep", "lead", 1_000_000, date(2026, 6, 20), "omitted", title="排除D")
    deal(env, "rep", "qualified", 400_000, date(2026, 7, 5), title="七月E")
    deal(env, "rep", "proposal", 100_000, date(2026, 5, 20), title="过期F")
    # 赵六: nothing won (behind: 0 ÷ 0.5)
    deal(env, "rep2", "qualified", 200_000, date(2026, 6, 30), "best_case", title="确认G")
    deal(env, "rep2", "lead", 50_000, date(2026, 6, 18), title="线索H")
    deal(env, "rep2", "lost", 500_000, date(2026, 6, 10), title="输单I")
    for i in range(12):
        deal(env, "rep2", "lead", 1000 + i, date(2026, 5, 1) + timedelta(days=i),
             title=f"旧{i:02d}")


P = DEFAULT_PROBABILITIES  # fewer than 30 closed deals: the defaults
WEIGHTED = 600_000 + 800_000 * P["negotiation"] + 600_000 * P["proposal"] \
    + 200_000 * P["qualified"] + 50_000 * P["lead"]
COMMIT = 600_000 + 800_000


async def _figures(env, manager: str, now: datetime = MONDAY):
    """The card's figures as the job computes them, inside a run's session."""
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlmodel.ext.asyncio.session import AsyncSession as ModelSession

    from jobs.alerts import RunCtx
    from jobs.forecast_card import forecast_managers, weekly_figures
    from jobs.targets import load_org

    async with AsyncSession(env.engine, expire_on_commit=False) as s, s.begin():
        rules = await env.jobs.load_rules(s)
        rc = RunCtx(session=s, rules=rules, now=now, secret=SECRET, dialect=env.jobs.dialect,
                    org=await load_org(s))
        db = ModelSession(bind=await s.connection())
        try:
            return rc, await forecast_managers(rc), await weekly_figures(rc, env.ids[manager],
                                                                        db)
        finally:
            await db.close()


async def test_weekly_figures_are_the_hand_computed_ones(env):
    seed(env)
    rc, managers, f = await _figures(env, "mgr")
    assert managers == sorted([env.ids["mgr"], env.ids["vp"]])  # not 孙经理: nothing to show
    assert f.period == JUNE and f.monday == date(2026, 6, 15) and f.elapsed == 0.5
    assert f.won == 600_000
    assert f.weighted == pytest.approx(WEIGHTED) and f.weighted == pytest.approx(1_555_000)
    assert f.commit == COMMIT
    assert f.commit_vs_weighted == pytest.approx(COMMIT - WEIGHTED)
    assert f.target == 2_000_000  # the team's explicit target beats its members' sum
    # most uncertain money: 方案C 300k, 谈判B 200k, 确认G 150k (排除D is omitted, 七月E is
    # next month, 线索H only 45k)
    assert [d.title for d in f.top] == ["方案C", "谈判B", "确认G"]
    assert [d.uncertain for d in f.top] == pytest.approx([300_000, 200_000, 150_000])
    assert [(b.name, b.attainment, b.pace) for b in f.behind] == [("赵六", 0.0, 0.0)]
    assert len(f.basis) == 1 and "default" in f.basis[0]

    card = weekly_card(rc, f)
    kv = {k.label: k.value for k in card.fields}
    assert kv["本月目标 target"] == "¥200.0万"
    assert kv["加权预测 weighted"] == "¥155.5万（78%）"
    assert kv["承诺预测 commit"] == "¥140.0万（70%）"
    assert kv["已赢单 won so far"] == "¥60.0万（30%）"
    assert kv["承诺 vs 加权 commit vs weighted"] == "−¥15.5万"
    top = card.text.split("**落后进度")[0]
    assert top.index("方案C") < top.index("谈判B") < top.index("确认G")
    assert "排除D" not in card.text and "七月E" not in card.text and "线索H" not in card.text
    assert "赵六：达成 0%" in card.text and "张三：" not in card.text
    assert "default probabilities" in card.text
    assert "amount × (1 − p(stage))" in card.footer
    assert card.title == "本周预测 · 2026-06 / weekly forecast"


async def test_a_vp_without_a_team_target_is_measured_against_the_people(env):
    seed(env)
    _rc, _m, f = await _figures(env, "vp")
    assert f.target == 1_400_000  # 张三 + 赵六: the VP manages no team of their own
    assert f.weighted == pytest.approx(WEIGHTED) and f.won == 600_000
    assert [d.title for d in f.top] == ["方案C", "谈判B", "确认G"]


async def test_queries_top_and_passed_close_dates(env):
    seed(env)
    from sqlalchemy.ext.asyncio import AsyncSession

    from sales.forecast import Probabilities

    probs = Probabilities(dict(P), "default", 0)
    async with AsyncSession(env.engine) as s:
        owners = {env.ids["rep"]: probs, env.ids["rep2"]: probs}
        top = await uncertain_deals(s, owners, JUNE, limit=2)
        assert [d.title for d in top] == ["方案C", "谈判B"]
        only_rep2 = await uncertain_deals(s, {env.ids["rep2"]: probs}, JUNE)
        assert [d.title for d in only_rep2] == ["确认G", "线索H"]
        # learned probabilities per team change the ranking: a sure proposal drops out
        sure = Probabilities({**P, "proposal": 0.99}, "learned", 40)
        top = await uncertain_deals(s, {env.ids["rep"]: sure, env.ids["rep2"]: probs}, JUNE)
        assert [d.title for d in top] == ["谈判B", "确认G", "线索H"]

        passed = await past_close(s, date(2026, 6, 15), limit=10)
        assert set(passed) == {env.ids["rep"], env.ids["rep2"]}
        lines, total = passed[env.ids["rep2"]]
        assert total == 12 and len(lines) == 10
        assert [d.title for d in lines] == [f"旧{i:02d}" for i in range(10)]  # oldest first
        assert [d.title for d in passed[env.ids["rep"]][0]] == ["过期F"]
        assert await past_close(s, date(2026, 5, 1)) == {}
        assert set(await past_close(s, date(2026, 6, 15), owners=[env.ids["rep"]])) == {
            env.ids["rep"]}


async def test_the_monday_card_arrives_once_per_manager(env):
    seed(env)
    r = await env.jobs.run("forecast", now=MONDAY)
    assert r["cards"] == 2 and r["snapshot_rows"] > 0
    rows = env.outbox("forecast:weekly:")
    assert sorted(o["target"]["id"] for o in rows) == ["qianzong", "wangjl"]
    assert {o["key"] for o in rows} == {f"forecast:weekly:user:{env.ids[m]}:2026-06-15"
                                        for m in ("mgr", "vp")}
    assert all(o["card"]["title"].startswith("本周预测") for o in rows)
    # twice the same day, a forced rerun, and a run later in the week: still once each
    assert await env.jobs.run("forecast", now=MONDAY) == DONE
    assert (await env.jobs.run("forecast", now=MONDAY, run_key="again"))["cards"] == 0
    assert (await env.jobs.run("forecast", now=TUESDAY))["cards"] == 0
    assert len(env.outbox("forecast:weekly:")) == 2


async def test_two_instances_at_once_still_send_one_card_each(env, db_url):
    seed(env)
    other = async_engine(db_url)
    a = JobScheduler(AlertJobs(env.engine, env.settings, SECRET, instance="A"),
                     busy_delay_s=0.05, busy_retries=100)
    b = JobScheduler(AlertJobs(other, env.settings, SECRET, instance="B"),
                     busy_delay_s=0.05, busy_retries=100)
    try:
        ra, rb = await asyncio.gather(a.fire("forecast", now=MONDAY),
                                      b.fire("forecast", now=MONDAY))
        assert DONE in (ra, rb) and (ra if rb == DONE else rb)["cards"] == 2
        ra, rb = await asyncio.gather(a.fire("close_dates", now=MONDAY),
                                      b.fire("close_dates", now=MONDAY))
        assert DONE in (ra, rb)
    finally:
        await other.dispose()
    assert len(env.outbox("forecast:weekly:")) == 2
    assert len(env.outbox("forecast:close_dates:")) == 2
    assert env.sql("SELECT count(*) FROM job_runs WHERE name = 'forecast'") == [(1,)]
    # the snapshot was taken once
    assert env.sql("SELECT count(DISTINCT taken_on) FROM forecast_snapshots") == [(1,)]


async def test_snapshot_on_monday_not_on_tuesday(env):
    seed(env)
    r = await env.jobs.run("forecast", now=TUESDAY)
    assert "snapshot_rows" not in r
    assert env.sql("SELECT count(*) FROM forecast_snapshots") == [(0,)]
    assert r["cards"] == 2  # the week's card still goes out (its Monday's key)
    r = await env.jobs.run("forecast", now=TUESDAY + timedelta(days=6))  # the next Monday
    assert r["snapshot_rows"] > 0
    days = env.sql("SELECT DISTINCT taken_on FROM forecast_snapshots")
    assert [str(d)[:10] for (d,) in days] == ["2026-06-22"]
    company = env.sql("SELECT value FROM forecast_snapshots WHERE scope = 'company' AND "
                      "method = 'commit' AND period_kind = 'month' AND period_start = :s",
                      s=JUNE.start)
    assert [float(v) for (v,) in company] == [COMMIT]


async def test_quiet_hours_hold_the_card(env):
    seed(env)
    late = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)  # Monday 22:00 Shanghai
    assert (await env.jobs.run("forecast", now=late))["cards"] == 2
    for o in env.outbox("forecast:weekly:"):
        at = o["next_at"] if isinstance(o["next_at"], datetime) else datetime.fromisoformat(
            o["next_at"])
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        assert at == datetime(2026, 6, 16, 0, 0, tzinfo=UTC)  # 08:00 the next morning


async def test_close_date_reminder_once_per_rep_per_day(env):
    seed(env)
    r = await env.jobs.run("close_dates", now=MONDAY)
    assert r["cards"] == 2
    rows = {o["target"]["id"]: o for o in env.outbox("forecast:close_dates:")}
    assert set(rows) == {"zhangsan", "zhaoliu"}
    z = rows["zhaoliu"]["card"]
    assert z["title"] == "预计成交日已过 · 12 个 / close date passed"
    assert "旧00" in z["text"] and "旧09" in z["text"] and "旧10" not in z["text"]
    assert "另有 2 个 / +2 more" in z["text"]
    assert "预计 2026-05-01，已过 45 天" in z["text"]
    assert "过期F" in rows["zhangsan"]["card"]["text"]
    assert "+" not in rows["zhangsan"]["card"]["text"].split("·")[-1]
    assert await env.jobs.run("close_dates", now=MONDAY) == DONE
    assert (await env.jobs.run("close_dates", now=MONDAY, run_key="x"))["cards"] == 0
    # every day, month end included: the next day is a new reminder
    assert (await env.jobs.run("close_dates", now=MONDAY + timedelta(days=15)))["cards"] == 2
    assert len(env.outbox("forecast:close_dates:")) == 4


async def test_rules_schedule_the_forecast_on_mondays():
    from config.alert_rules import load_alert_rules

    rules = load_alert_rules()
    assert f"{rules.fire_time('forecast'):%H:%M}" == "08:45"
    assert rules.fire_day("forecast") == "mon" and rules.fire_day("close_dates") is None
    assert rules.fires_on("forecast", date(2026, 6, 15))
    assert not rules.fires_on("forecast", date(2026, 6, 16))
    assert rules.fires_on("close_dates", date(2026, 6, 30))
    moved = load_alert_rules({"schedule": {"forecast": "07:30"}})
    assert f"{moved.fire_time('forecast'):%H:%M}" == "07:30"
    assert f"{moved.fire_time('stale'):%H:%M}" == "09:00"
