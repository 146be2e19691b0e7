"""Deferred jobs under caps (issue 18): at most ``jobs_global_cap`` run at once across every
worker process, at most ``jobs_per_user_cap`` for one person (the next person's jobs go
first); a worker past its memory ceiling claims nothing more, finishes, and hands over to a
fresh process (the supervisor replaces an exited worker); results and run times are stored
on the job row."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from sqlmodel import Session

from bot.procs import RECYCLED, Supervisor
from config import load_settings
from jobs.worker import Worker
from storage.db import async_engine, is_sqlite, sync_engine
from storage.metrics_queries import snapshot
from storage.migrate import upgrade
from storage.models import Job
from tests.media.test_worker import _rows


def _add(url: str, *jobs: tuple[str, str, int]) -> None:
    eng = sync_engine(url)
    with Session(eng) as s:
        for name, owner, n in jobs:
            s.add(Job(idem_key=f"cap{n}", name=name, owner=owner, args={"n": n}))
        s.commit()
    eng.dispose()


async def test_global_and_per_user_caps_across_two_workers(db_url, tmp_path):
    upgrade(db_url)
    settings = load_settings(database_url=db_url, data_dir=tmp_path, secret_key="k",
                             jobs_global_cap=3, jobs_per_user_cap=2)
    engines = [async_engine(db_url), async_engine(db_url)]
    running: dict[str, int] = {}
    peak_total = 0
    peak_user: dict[str, int] = {}
    order: list[tuple[str, int]] = []

    async def work(session, services, args):
        nonlocal peak_total
        owner = args["owner"]
        running[owner] = running.get(owner, 0) + 1
        peak_total = max(peak_total, sum(running.values()))
        peak_user[owner] = max(peak_user.get(owner, 0), running[owner])
        order.append((owner, args["n"]))
        await asyncio.sleep(0.15)
        running[owner] -= 1
        return {"status": 200, "n": args["n"]}

    workers = [Worker(e, settings, b"k", {"web.work": work}, postgres=not is_sqlite(db_url),
                      concurrency=4) for e in engines]
    eng = sync_engine(db_url)
    with Session(eng) as s:
        for n in range(8):  # the first person queues 8, the second 2 a moment later
            s.add(Job(idem_key=f"cap{n}", name="web.work", owner="web:1",
                      args={"n": n, "owner": "web:1"}))
        s.commit()
        for n in range(8, 10):
            s.add(Job(idem_key=f"cap{n}", name="web.work", owner="web:2",
                      args={"n": n, "owner": "web:2"}))
        s.commit()
    eng.dispose()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for w in workers:
            await w.run_once()
        await asyncio.sleep(0.01)
        left = _rows(db_url, "SELECT count(*) FROM jobs WHERE status='pending'")[0][0]
        if not left and not any(w._running for w in workers):
            break
    assert peak_total == 3, peak_total  # the global cap, across both workers
    assert peak_user["web:1"] == 2 and 1 <= peak_user["web:2"] <= 2, peak_user
    # the second person did not wait for the first one's whole queue
    first_b = next(i for i, (o, _n) in enumerate(order) if o == "web:2")
    assert first_b <= 3, order
    done = _rows(db_url, "SELECT status, result, run_ms FROM jobs ORDER BY id")
    assert [r[0] for r in done] == ["done"] * 10
    assert all(r[2] is not None and r[2] >= 100 for r in done), done
    assert "\"n\": 0" in str(done[0][1]) or "'n': 0" in str(done[0][1])
    snap = await snapshot(engines[0], _now())
    assert snap["job_runs_1h"] == {"web.work": 10}
    assert 0.1 <= snap["job_avg_s"]["web.work"] <= snap["job_max_s"]["web.work"]
    for w in workers:
        await w.stop()
    for e in engines:
        await e.dispose()


def _now():
    from bot.event import utcnow

    return utcnow()


async def test_a_worker_past_its_memory_ceiling_stops_claiming_and_hands_over(db_url,
                                                                              tmp_path):
    upgrade(db_url)
    settings = load_settings(database_url=db_url, data_dir=tmp_path, secret_key="k",
                             worker_max_rss_mb=1)  # any process is past 1 MB
    engine = async_engine(db_url)
    handed_over = asyncio.Event()
    ran: list[int] = []

    async def work(session, services, args):
        ran.append(args["n"])
        await asyncio.sleep(0.05)
        return {"status": 200}

    w = Worker(engine, settings, b"k", {"web.work": work}, postgres=not is_sqlite(db_url),
               concurrency=1, on_recycle=handed_over.set)
    _add(db_url, *[("web.work", f"web:{n}", n) for n in range(3)])
    await w.run_once()
    await asyncio.wait_for(handed_over.wait(), 10)
    assert w.recycling and ran == [0]
    assert await w.run_once() == 0  # claims nothing more: the fresh process takes the rest
    left = _rows(db_url, "SELECT count(*) FROM jobs WHERE status='pending'"
                 " AND claimed_until IS NULL")[0][0]
    assert left == 2
    await w.stop()
    await engine.dispose()


def test_supervisor_replaces_an_exited_worker():
    spawned: list[subprocess.Popen] = []

    def spawn(n, _config):
        # the replacement lives until stopped; the first one exits as a recycled worker does
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        spawned.append(p)
        return [p]

    first = subprocess.Popen([sys.executable, "-c", f"import sys; sys.exit({RECYCLED})"])
    sup = Supervisor([first], None, pause_s=0.05, spawn=spawn).start()
    deadline = time.monotonic() + 10
    while not spawned and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert sup.respawned == 1 and len(spawned) == 1 and sup.procs[0] is spawned[0]
    assert spawned[0].poll() is None  # alive, not respawned over and over
    sup.stop()
    assert spawned[0].poll() is not None  # stopped with the supervisor
