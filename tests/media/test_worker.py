"""The durable job worker: claims due rows of registered jobs only, commits results + outbox
rows with ``done`` in one transaction, retries failures with backoff, tells the user after
the last attempt, and keeps going."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import text
from sqlmodel import Session

from bot.event import ChatRef, Event, utcnow
from config import load_settings
from jobs.worker import Worker
from storage.db import async_engine, is_sqlite, sync_engine
from storage.migrate import upgrade
from storage.models import Job


def _event(n: int) -> dict:
    return Event(platform="wecom", app_id="corp", event_id=f"e{n}", sender="zhangsan",
                 chat=ChatRef(id="zhangsan"), msg_type="voice").model_dump(mode="json")


def _add_jobs(url: str, *jobs: tuple[str, int]) -> None:
    eng = sync_engine(url)
    with Session(eng) as s:
        for name, n in jobs:
            s.add(Job(idem_key=f"k{n}", name=name, args={"event": _event(n), "n": n}))
        s.commit()
    eng.dispose()


def _rows(url: str, sql: str):
    eng = sync_engine(url)
    with eng.connect() as c:
        out = c.execute(text(sql)).all()
    eng.dispose()
    return out


async def test_worker_runs_retries_and_survives(db_url, tmp_path):
    upgrade(db_url)
    settings = load_settings(database_url=db_url, data_dir=tmp_path, secret_key="k")
    engine = async_engine(db_url)
    seen: list[int] = []
    running = 0
    peak = 0

    async def ok(ctx, services, args):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        seen.append(args["n"])
        await ctx.reply(f"done {args['n']}")

    async def boom(ctx, services, args):
        raise RuntimeError("engine exploded")

    clock_shift = timedelta(0)

    def clock():
        return utcnow() + clock_shift

    worker = Worker(engine, settings, b"secret", {"ok": ok, "boom": boom},
                    postgres=not is_sqlite(db_url), concurrency=2, clock=clock)
    _add_jobs(db_url, ("ok", 1), ("boom", 2), ("ok", 3), ("someone_elses", 4), ("ok", 5))
    for _ in range(10):
        await worker.run_once()
        await asyncio.sleep(0.08)
    while worker._running:
        await asyncio.sleep(0.02)
    assert sorted(seen) == [1, 3, 5] and peak <= 2
    # the failing job is pending again with a backoff; others are done, unknown names untouched
    status = dict(_rows(db_url, "SELECT name || ':' || CAST(id AS TEXT), status FROM jobs"))
    assert sorted(status.values()) == ["done", "done", "done", "pending", "pending"]
    assert _rows(db_url, "SELECT attempts FROM jobs WHERE name='someone_elses'")[0][0] == 0
    assert len(_rows(db_url, "SELECT id FROM outbox")) == 3
    # run the failing job to its last attempt: failed, and the user is told
    for _ in range(3):
        clock_shift += timedelta(minutes=10)
        await worker.run_once()
        while worker._running:
            await asyncio.sleep(0.02)
    row = _rows(db_url, "SELECT status, attempts, last_error FROM jobs WHERE name='boom'")[0]
    assert row[0] == "failed" and row[1] == 3 and "engine exploded" in row[2]
    msgs = [r[0] for r in _rows(db_url, "SELECT message FROM outbox")]
    assert len(msgs) == 4 and "something went wrong" in str(msgs[-1])
    # still alive: a new job runs
    _add_jobs(db_url, ("ok", 6))
    await worker.run_once()
    while worker._running:
        await asyncio.sleep(0.02)
    assert 6 in seen
    await worker.stop()
    await engine.dispose()
