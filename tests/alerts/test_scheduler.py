"""Scheduling: APScheduler starts and stops with the app; on PostgreSQL two instances firing
the same jobs at once deliver each alert exactly once (advisory lock + job_runs); a run that
crashes leaves nothing behind and runs again."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestServer

from bot.app import create_app
from config import load_settings
from jobs.alerts import JOBS
from jobs.runner import BUSY, DONE, AlertJobs
from jobs.scheduler import SCHEDULER, JobScheduler
from storage.db import async_engine
from tests.alerts.conftest import NOW, SECRET

pytestmark = pytest.mark.dates  # expectations relative to today: see tests/conftest.py


def seed_many(env, n: int = 60) -> None:
    for i in range(n):
        env.deal(idle_days=20 + i % 15, owner="rep" if i % 2 else "rep2", title=f"项目{i}")
        env.invoice(due=NOW.date() - timedelta(days=1 + i % 40), number=f"INV-{i}")


async def test_two_instances_enqueue_each_alert_once(env, db_url):
    """PostgreSQL: advisory lock + job_runs. SQLite (web + several worker processes on one
    file): the write lock and job_runs; the loser backs off as BUSY and then finds it DONE."""
    seed_many(env)
    other_engine = async_engine(db_url)
    a = JobScheduler(AlertJobs(env.engine, env.settings, SECRET, instance="A"),
                     busy_delay_s=0.05, busy_retries=100)
    b = JobScheduler(AlertJobs(other_engine, env.settings, SECRET, instance="B"),
                     busy_delay_s=0.05, busy_retries=100)
    try:
        results = await asyncio.gather(*(s.fire(name, now=NOW) for name in JOBS
                                         for s in (a, b)))
        for name, (ra, rb) in zip(JOBS, zip(results[::2], results[1::2], strict=True),
                                  strict=True):
            assert DONE in (ra, rb) and isinstance(ra if rb == DONE else rb, dict), name
        runs = env.sql("SELECT name, instance FROM job_runs ORDER BY name")
        assert sorted(r[0] for r in runs) == sorted(JOBS)
        keys = [r["key"] for r in env.outbox()]
        assert len(keys) == len(set(keys))
        # each (rule, entity) alerted once: one state row per alerted entity
        per = env.sql("SELECT rule, entity_id, count(*) FROM alert_state GROUP BY rule, entity_id"
                      " HAVING count(*) > 1")
        assert per == []
        stale_cards = [o for o in env.outbox() if o["key"].startswith("alert:stale:")]
        # rep, rep2 and (red deals) their manager: one card each
        assert sorted(o["target"]["id"] for o in stale_cards) == ["wangjl", "zhangsan",
                                                                    "zhaoliu"]
        owner_total = sum(int(o["card"]["title"].split("·")[1].split()[0])
                          for o in stale_cards if o["target"]["id"] != "wangjl")
        assert owner_total == 60
        # the next day both fire again: once more, exactly once
        again = await asyncio.gather(a.fire("overdue", now=NOW + timedelta(days=1)),
                                     b.fire("overdue", now=NOW + timedelta(days=1)))
        assert again.count(DONE) == 1
    finally:
        await other_engine.dispose()


async def test_busy_is_reported_while_another_instance_holds_the_run(env, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("advisory locks are PostgreSQL")
    seed_many(env, 10)
    other_engine = async_engine(db_url)
    started, release = asyncio.Event(), asyncio.Event()
    real = JOBS["stale"]

    async def slow(rc):
        started.set()
        await release.wait()
        return await real(rc)

    JOBS["stale"] = slow
    try:
        a = AlertJobs(env.engine, env.settings, SECRET, instance="A")
        b = AlertJobs(other_engine, env.settings, SECRET, instance="B")
        ta = asyncio.create_task(a.run("stale", now=NOW))
        await asyncio.wait_for(started.wait(), 10)
        assert await b.run("stale", now=NOW) == BUSY
        release.set()
        assert isinstance(await ta, dict)
        assert await b.run("stale", now=NOW) == DONE
    finally:
        JOBS["stale"] = real
        await other_engine.dispose()


async def test_crash_mid_run_leaves_nothing_and_reruns(env, monkeypatch):
    seed_many(env, 10)
    real = JOBS["stale"]

    async def crash(rc):
        await real(rc)  # outbox rows and state written in the run's transaction ...
        raise RuntimeError("killed")  # ... then the instance dies before the commit

    monkeypatch.setitem(JOBS, "stale", crash)
    sched = JobScheduler(env.jobs)
    assert await sched.fire("stale", now=NOW) == "failed"
    assert env.outbox() == [] and env.sql("SELECT count(*) FROM job_runs") == [(0,)]
    monkeypatch.setitem(JOBS, "stale", real)
    r = await sched.fire("stale", now=NOW)
    assert r["cards"] == 2 and len(env.outbox()) == 2  # zhangsan, zhaoliu


async def test_scheduler_starts_and_stops_with_the_app(env, tmp_path):
    settings = load_settings(database_url=env.url, data_dir=tmp_path,
                             rules={"alerts": {"digest": {"time": "07:45"}}})
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        sched = app[SCHEDULER].scheduler
        assert sched is not None and sched.running
        jobs = {j.id: j for j in sched.get_jobs()}
        cron = {k for k in jobs if not k.startswith("periodic:")}
        assert cron == set(JOBS)
        # other features' periodic passes (chat-buffer purge, approval reminders, retention of
        # the inbox and the outbox) run too
        assert {"periodic:chat_buffer.purge", "periodic:approvals.reminders",
                "periodic:retention"} <= set(jobs)
        retention = {name: fn for name, fn, _every in app[SCHEDULER]._periodic}["retention"]
        assert await retention() == 0  # runs on the app's own engine; nothing is old yet
        assert "hour='9', minute='0'" in str(jobs["stale"].trigger)
        assert "hour='7', minute='45'" in str(jobs["digest"].trigger)
        assert str(jobs["stale"].trigger.timezone) == "Asia/Shanghai"
    finally:
        await server.close()
    assert app[SCHEDULER].scheduler is None


async def test_catch_up_runs_todays_missed_jobs_on_start(env):
    env.deal(idle_days=22)
    env.rules({"catch_up": True})
    env.jobs.clock = lambda: NOW  # 10:00 local: every job's time has passed
    sched = JobScheduler(env.jobs)
    await sched.start()
    try:
        for _ in range(200):
            if len(env.sql("SELECT name FROM job_runs")) == len(JOBS):
                break
            await asyncio.sleep(0.05)
        assert sorted(n for (n,) in env.sql("SELECT name FROM job_runs")) == sorted(JOBS)
        assert [o["target"]["id"] for o in env.outbox("alert:stale:")] == ["zhangsan"]
    finally:
        await sched.stop()


async def test_periodic_passes_of_other_features_run_while_started(env):
    calls = []

    async def tick():
        calls.append(1)

    async def boom():
        raise RuntimeError("a failing pass does not stop the scheduler")

    sched = JobScheduler(env.jobs)
    sched.add_periodic("tick", tick, every_s=0.05)
    sched.add_periodic("boom", boom, every_s=0.05)
    await sched.start()
    try:
        for _ in range(100):
            if len(calls) >= 3:
                break
            await asyncio.sleep(0.02)
        assert len(calls) >= 3
    finally:
        await sched.stop()
    n = len(calls)
    await asyncio.sleep(0.15)
    assert len(calls) == n  # stopped


async def test_a_cron_firing_runs_the_job_on_the_event_loop(env):
    from datetime import datetime

    env.deal(idle_days=25)
    sched = JobScheduler(env.jobs)
    await sched.start()
    try:
        job = sched.scheduler.get_job("stale")
        job.modify(next_run_time=datetime.now(job.trigger.timezone))  # "it is 09:00 now"
        for _ in range(200):
            if env.sql("SELECT name FROM job_runs"):
                break
            await asyncio.sleep(0.05)
        assert env.sql("SELECT name FROM job_runs") == [("stale",)]
        assert [o["target"]["id"] for o in env.outbox("alert:stale:")] == ["wangjl", "zhangsan"]
    finally:
        await sched.stop()
