"""Durable worker for deferred jobs (``ctx.defer``): speech-to-text, OCR, anything slow.

Rows of ``jobs`` (status ``pending``, ``next_at <= now``) are claimed with a lease
(``claimed_until``; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several processes can share
the queue), run one at a time per core, and finished in ONE transaction: the job's writes, its
outbox rows (the reply cards) and ``status='done'`` guarded by ``WHERE status='pending'``. A
crash before that commit leaves the row pending; the lease expires and it runs again.

A job function is ``async def job(ctx, services, args)``: ``ctx`` is a ``bot.ctx.Ctx`` built
from the event stored by ``ctx.defer`` (so ``ctx.reply`` answers where the user wrote), and
``services`` is whatever the app passes (media engines, adapters). CPU-heavy work goes through
``services.run`` (a thread pool), never on the event loop. An exception is retried with
backoff; after ``max_attempts`` the job is marked failed and the user is told.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.ctx import Ctx
from bot.event import Event, utcnow

log = logging.getLogger(__name__)

JobFn = Callable[[Ctx, Any, dict], Awaitable[None]]

FAILURE_TEXT = ("抱歉，处理这条消息时出错了，请稍后再试。"
                "/ Sorry, something went wrong; please retry.")

# candidates (read first, so an idle poll never takes a write lock), then each is claimed by
# one guarded UPDATE that re-checks the lease and both caps at the moment it writes
_CANDIDATES = ("SELECT id, owner FROM jobs WHERE status='pending' AND next_at <= :now"
               " AND (claimed_until IS NULL OR claimed_until < :now) AND name IN ({names})"
               " ORDER BY next_at, id LIMIT :scan")
_RUNNING = ("SELECT owner, count(*) FROM jobs WHERE status='pending' AND claimed_until >= :now"
            " GROUP BY owner")
_CLAIM_ONE = ("UPDATE jobs SET claimed_until=:u, attempts=attempts+1"
              " WHERE id=:id AND status='pending'"
              " AND (claimed_until IS NULL OR claimed_until < :now)"
              " AND (SELECT count(*) FROM jobs r WHERE r.status='pending'"
              " AND r.claimed_until >= :now) < :global_cap"
              " AND (owner = '' OR (SELECT count(*) FROM jobs r WHERE r.status='pending'"
              " AND r.claimed_until >= :now AND r.owner = jobs.owner) < :user_cap)"
              " RETURNING id, name, args, attempts")
_PG_CLAIM_LOCK = "SELECT pg_advisory_xact_lock(7310431)"  # one claimer at a time: exact caps

# jobs whose name starts with this take no chat event: ``async def job(session, services,
# args) -> dict`` (the mini-app's uploads); the dict is stored as the job's result
PLAIN_PREFIX = "web."


def rss_mb() -> float:
    """This process's resident memory (Linux ``/proc/self/statm``), in MB; 0 if unknown."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


class Worker:
    def __init__(self, engine, settings, secret: bytes, jobs: dict[str, JobFn],
                 services: Any = None, on_outbox: Callable[[], None] = lambda: None,
                 postgres: bool = False, concurrency: int | None = None,
                 lease_s: float = 600.0, poll_s: float = 0.5, max_attempts: int = 3,
                 clock=utcnow, on_recycle: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.secret = secret
        self.jobs = dict(jobs)
        self.services = services
        self.on_outbox = on_outbox
        self.postgres = postgres
        self.concurrency = concurrency or os.cpu_count() or 2
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.max_attempts = max_attempts
        self.clock = clock
        self._sem = asyncio.Semaphore(self.concurrency)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._stopping = False
        self.done = 0
        self.failed = 0
        self.global_cap = max(1, getattr(settings, "jobs_global_cap", 4))
        self.user_cap = max(1, getattr(settings, "jobs_per_user_cap", 2))
        self.max_rss_mb = getattr(settings, "worker_max_rss_mb", 0)
        self.on_recycle = on_recycle  # set in worker processes: a fresh process replaces this
        self.recycling = False

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None and self.jobs:
            self._task = asyncio.create_task(self._loop(), name="job-worker")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
        close = getattr(self.services, "close", None)
        if callable(close):
            close()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                n = await self.run_once()
            except Exception:  # noqa: BLE001 - the worker outlives DB hiccups
                log.exception("job pass failed")
                n = 0
            if n == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)

    # -- claiming -------------------------------------------------------------------------
    async def run_once(self) -> int:
        """Claim as many due jobs as there are free slots and start them."""
        free = self.concurrency - len(self._running)
        if free <= 0 or self.recycling:
            return 0
        rows = await self._claim(free)
        for row in rows:
            task = asyncio.create_task(self._guarded(*row), name=f"job-{row[0]}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(rows)

    async def _claim(self, limit: int) -> list[tuple]:
        names = list(self.jobs)
        params: dict[str, Any] = {f"n{i}": n for i, n in enumerate(names)}
        now = self.clock()
        params.update(u=now + timedelta(seconds=self.lease_s), now=now, scan=4 * limit + 16,
                      global_cap=self.global_cap, user_cap=self.user_cap)
        sql_names = ",".join(f":n{i}" for i in range(len(names)))
        got: list[tuple] = []
        async with AsyncSession(self.engine) as session:
            conn = await session.connection()
            due = (await conn.execute(text(_CANDIDATES.format(names=sql_names)), params)).all()
            if not due:
                await session.rollback()
                return []
            if self.postgres:
                await conn.execute(text(_PG_CLAIM_LOCK))
            running = dict((await conn.execute(text(_RUNNING), params)).all())
            total = sum(running.values())
            for job_id, owner in due:
                if len(got) >= limit or total >= self.global_cap:
                    break
                if owner and running.get(owner, 0) >= self.user_cap:
                    continue  # this person's other jobs first; the next person's now
                row = (await conn.execute(text(_CLAIM_ONE), {**params, "id": job_id})).first()
                if row is not None:
                    got.append(tuple(row))
                    total += 1
                    running[owner] = running.get(owner, 0) + 1
            await session.commit()
        return got

    # -- running --------------------------------------------------------------------------
    async def _guarded(self, job_id: int, name: str, args: Any, attempts: int) -> None:
        async with self._sem:
            started = time.monotonic()
            outcome = "done"
            try:
                outcome = await self.run_job(job_id, name, args, attempts) or "done"
            except Exception:  # noqa: BLE001 - one bad job never kills the worker
                outcome = "crashed"
                log.exception("job %s (%s) crashed outside its transaction", job_id, name)
            await self._record_duration(job_id, time.monotonic() - started, outcome)
        self._check_memory()
        self._wake.set()  # a slot is free

    async def _record_duration(self, job_id: int, seconds: float, outcome: str) -> None:
        """The run's wall time on its row (``/metrics`` reads job durations from there)."""
        try:
            async with AsyncSession(self.engine) as session:
                await session.execute(text("UPDATE jobs SET run_ms=:ms WHERE id=:id"),
                                      {"ms": int(seconds * 1000), "id": job_id})
                await session.commit()
        except Exception:  # noqa: BLE001 - bookkeeping only
            log.warning("job %s: could not record its duration (%s)", job_id, outcome)

    def _check_memory(self) -> None:
        """Past the ceiling: claim nothing more, finish what runs, then hand over to a fresh
        process (model arenas and decoded images are never given back to the OS)."""
        if not self.max_rss_mb or self.on_recycle is None or self.recycling:
            return
        rss = rss_mb()
        if rss > self.max_rss_mb:
            self.recycling = True
            log.warning("worker at %.0f MB resident (ceiling %d MB): finishing %d running"
                        " job(s), then a fresh process takes over", rss, self.max_rss_mb,
                        len(self._running) - 1)
            asyncio.get_running_loop().create_task(self._recycle_when_idle())

    async def _recycle_when_idle(self) -> None:
        while any(not t.done() for t in list(self._running)):
            await asyncio.sleep(0.05)
        if self.on_recycle is not None:
            self.on_recycle()

    async def run_job(self, job_id: int, name: str, args: Any, attempts: int) -> None:
        if isinstance(args, str):
            args = json.loads(args)
        args = dict(args or {})
        fn = self.jobs[name]
        if name.startswith(PLAIN_PREFIX):
            return await self._run_plain(job_id, name, fn, args, attempts)
        try:
            event = Event.model_validate(args.get("event") or {})
        except ValueError:
            log.error("job %s has no readable event; marking failed", job_id)
            await self._finish_failed(job_id, None, "unreadable event", tell=False)
            return
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            ctx = Ctx(event, session, self.settings, self.secret,
                      key_prefix=f"job:{job_id}", clock=self.clock)
            try:
                await ctx.load_user()
                await session.commit()  # no read transaction held during slow work
                await fn(ctx, self.services, args)
                res = await session.execute(
                    text("UPDATE jobs SET status='done', last_error='' WHERE id=:id"
                         " AND status='pending'"), {"id": job_id})
                if res.rowcount != 1:  # another worker finished it after our lease ran out
                    await session.rollback()
                    return
                for row in ctx.outbox:
                    session.add(row)
                await session.commit()
            except Exception as exc:  # noqa: BLE001
                await session.rollback()
                log.exception("job %s (%s) failed (attempt %s)", job_id, name, attempts)
                if attempts >= self.max_attempts:
                    await self._finish_failed(job_id, event, repr(exc)[:500], tell=True)
                else:
                    await self._retry(job_id, attempts, repr(exc)[:500])
                return
        self.done += 1
        if ctx.outbox:
            self.on_outbox()

    async def _run_plain(self, job_id: int, name: str, fn: Any, args: dict,
                         attempts: int) -> str:
        """A job with no chat event (the mini-app's uploads): its dict result is stored with
        ``status='done'`` in one statement, for the page that waits on it."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            try:
                result = await fn(session, self.services, args)
                res = await session.execute(
                    text("UPDATE jobs SET status='done', last_error='', result=:r WHERE id=:id"
                         " AND status='pending'"),
                    {"id": job_id, "r": json.dumps(result or {}, ensure_ascii=False)})
                if res.rowcount != 1:
                    await session.rollback()
                    return "lost_lease"
                await session.commit()
            except Exception as exc:  # noqa: BLE001
                await session.rollback()
                log.exception("job %s (%s) failed (attempt %s)", job_id, name, attempts)
                if attempts >= self.max_attempts:
                    await self._finish_failed(job_id, None, repr(exc)[:500], tell=False)
                    return "failed"
                await self._retry(job_id, attempts, repr(exc)[:500])
                return "retry"
        self.done += 1
        return "done"

    async def _retry(self, job_id: int, attempts: int, error: str) -> None:
        delay = min(300.0, 2.0 * 4 ** (attempts - 1))
        async with AsyncSession(self.engine) as session:
            await session.execute(
                text("UPDATE jobs SET next_at=:n, claimed_until=NULL, last_error=:e"
                     " WHERE id=:id AND status='pending'"),
                {"n": self.clock() + timedelta(seconds=delay), "e": error, "id": job_id})
            await session.commit()

    async def _finish_failed(self, job_id: int, event: Event | None, error: str,
                             tell: bool) -> None:
        self.failed += 1
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            res = await session.execute(
                text("UPDATE jobs SET status='failed', last_error=:e WHERE id=:id"
                     " AND status='pending'"), {"e": error, "id": job_id})
            if res.rowcount == 1 and tell and event is not None and event.kind == "message":
                ctx = Ctx(event, session, self.settings, self.secret,
                          key_prefix=f"job:{job_id}:fail", clock=self.clock)
                await ctx.reply(FAILURE_TEXT)
                for row in ctx.outbox:
                    session.add(row)
            await session.commit()
        self.on_outbox()


def _app_key():
    from aiohttp import web

    return web.AppKey("job_worker", Worker)


JOB_WORKER = _app_key()


def attach_worker(app, settings, engine, secret: bytes, adapters: dict,
                  on_outbox: Callable[[], None], postgres: bool) -> Worker:
    """Build the worker for the handlers' deferred jobs with the media services (engines load
    lazily on the first job) and keep it on ``app[JOB_WORKER]``; the app starts/stops it."""
    from handlers import JOBS
    from integrations.media.config import MediaConfig
    from integrations.media.service import MediaServices
    from jobs.media_uploads import UPLOAD_JOBS

    services = MediaServices(MediaConfig.from_env(), adapters, settings.data_dir)
    worker = Worker(engine, settings, secret, {**JOBS, **UPLOAD_JOBS}, services,
                    on_outbox=on_outbox,
                    postgres=postgres)
    app[JOB_WORKER] = worker
    return worker
