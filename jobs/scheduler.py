"""APScheduler 3.x wrapper, started and stopped with the app (``bot.app.create_app``).

Every instance runs the same cron triggers (times from the alert rules, in their timezone);
``AlertJobs.run`` makes each run happen once (advisory lock + ``job_runs``). An instance that
finds the job ``BUSY`` on another instance retries a few times, so if that instance dies
mid-run this one completes the day's run. With ``catch_up`` on, a starting instance runs
today's jobs whose time has passed and that no instance finished (a restart after a crash).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import datetime

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from jobs.alerts import JOBS
from jobs.runner import BUSY, AlertJobs

log = logging.getLogger(__name__)


class JobScheduler:
    def __init__(self, jobs: AlertJobs, busy_retries: int = 5, busy_delay_s: float = 60.0):
        self.jobs = jobs
        self.busy_retries = busy_retries
        self.busy_delay_s = busy_delay_s
        self.scheduler: AsyncIOScheduler | None = None
        self._tasks: set[asyncio.Task] = set()
        self._periodic: list[tuple[str, Callable[[], Awaitable[object]], float]] = []

    def add_periodic(self, name: str, fn: Callable[[], Awaitable[object]],
                     every_s: float) -> None:
        """Another feature's periodic pass (e.g. approval reminders), awaited every
        ``every_s`` seconds on every instance while the app runs: ``fn`` must be safe to run
        concurrently on several instances (claim its work). Call before the app starts."""
        self._periodic.append((name, fn, every_s))

    async def start(self) -> None:
        self.scheduler = AsyncIOScheduler()
        for name, fn, every in self._periodic:
            self.scheduler.add_job(self._spawn_fn, IntervalTrigger(seconds=every),
                                   args=[name, fn], id=f"periodic:{name}", coalesce=True,
                                   max_instances=1, replace_existing=True)
        try:
            rules = await self.jobs.load_rules()
        except Exception:  # noqa: BLE001 - a bad rules row must not keep the bot down
            log.exception("alert rules unreadable; alert jobs not scheduled")
            rules = None
        if rules is not None and not rules.enabled:
            log.info("alerts disabled by rules")
        if rules is None or not rules.enabled:
            self.scheduler.start()
            return
        for name in JOBS:
            t = rules.fire_time(name)
            day = rules.fire_day(name)  # weekly jobs (forecast: Mondays); the rest daily
            week = {"day_of_week": day} if day else {}
            self.scheduler.add_job(self._spawn, CronTrigger(hour=t.hour, minute=t.minute,
                                                            timezone=rules.tz, **week),
                                   args=[name], id=name, coalesce=True, max_instances=1,
                                   misfire_grace_time=3600, replace_existing=True)
        self.scheduler.start()
        log.info("scheduler up: %s", ", ".join(f"{n}@{rules.fire_time(n):%H:%M}"
                                               for n in JOBS))
        if rules.catch_up:
            now = self.jobs.clock().astimezone(rules.tz)
            for name in JOBS:
                if now.time() >= rules.fire_time(name) and rules.fires_on(name, now.date()):
                    asyncio.get_running_loop().create_task(self._spawn(name),
                                                           name=f"catch-up-{name}")

    # APScheduler runs coroutine functions as tasks on the loop (plain functions would go to
    # a thread pool, away from the loop): every job callable here is ``async``.
    async def _spawn_fn(self, name: str, fn) -> None:
        self._track()
        try:
            await fn()
        except Exception:  # noqa: BLE001 - the next interval tries again
            log.exception("periodic %s failed", name)

    async def _spawn(self, name: str) -> None:
        self._track()
        await self.fire(name)

    def _track(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def fire(self, name: str, now: datetime | None = None) -> dict | str:
        """One scheduled firing: run, and while another instance holds it, wait and retry."""
        result: dict | str = BUSY
        for attempt in range(self.busy_retries + 1):
            try:
                result = await self.jobs.run(name, now=now)
            except Exception:  # noqa: BLE001 - the next firing tries again
                log.exception("job %s failed", name)
                return "failed"
            if result != BUSY or attempt == self.busy_retries:
                return result
            await asyncio.sleep(self.busy_delay_s)
        return result

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with suppress(asyncio.CancelledError, Exception):
                await t


SCHEDULER = web.AppKey("scheduler", JobScheduler)


def attach_scheduler(app: web.Application, settings, engine, secret: bytes,
                     on_outbox) -> JobScheduler:
    """Build the scheduler for ``create_app`` (start/stop it in the app's lifecycle)."""
    sched = JobScheduler(AlertJobs(engine, settings, secret, on_outbox=on_outbox))
    app[SCHEDULER] = sched
    return sched
