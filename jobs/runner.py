"""Run one scheduled job exactly once across instances.

A run is one transaction that
1. on PostgreSQL takes ``pg_try_advisory_xact_lock(namespace, crc32(job))`` — another instance
   running the same job makes this one back off at once (``BUSY``); the lock goes with the
   transaction, so a crashed instance never leaves it behind;
2. skips if ``job_runs`` already holds (job, run_key) — the run key is the local day, so an
   instance whose timer fires later finds the work done;
3. scans, writes outbox rows and alert state, and inserts the ``job_runs`` row; commit.

A crash before the commit leaves nothing behind, so a retry (the other instance's timer, a
restart with ``catch_up``) runs it again. The unique ``job_runs`` key and the unique outbox
``idem_key`` make a double run harmless even without the lock. SQLite (web + worker processes
on one file): the database write lock serialises runs; a process that loses gets "database is
locked" (→ ``BUSY``, retried) or the unique ``job_runs`` key (→ ``DONE``), never a second send.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import zlib
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.event import utcnow
from config import Settings
from config.alert_rules import AlertRules
from jobs.alerts import JOBS, RunCtx
from jobs.targets import load_org
from storage.alert_models import JobRun
from storage.rules import current_alert_rules

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x46420005  # "FB", issue 5
BUSY = "busy"
DONE = "done"


def lock_key(name: str) -> int:
    """crc32 of the job name as a signed int4 (the two-key advisory lock form)."""
    v = zlib.crc32(name.encode())
    return v - 2**32 if v >= 2**31 else v


class AlertJobs:
    def __init__(self, engine, settings: Settings, secret: bytes, clock=utcnow,
                 on_outbox: Callable[[], None] = lambda: None, instance: str = ""):
        self.engine = engine  # AsyncEngine
        self.settings = settings
        self.secret = secret
        self.clock = clock
        self.on_outbox = on_outbox
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.dialect = engine.dialect.name
        self._local = {name: asyncio.Lock() for name in JOBS}

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgresql"

    async def load_rules(self, session=None) -> AlertRules:
        """Defaults ← ``[rules.alerts]`` in settings ← the admin's latest ``alerts`` row."""
        if session is None:
            async with AsyncSession(self.engine) as s:
                return await self.load_rules(s)
        return await current_alert_rules(session, self.settings.rules)

    async def _ran(self, name: str, key: str) -> bool:
        async with AsyncSession(self.engine) as s:
            return (await s.execute(select(JobRun.id).where(
                JobRun.name == name, JobRun.run_key == key))).first() is not None

    async def run(self, name: str, now: datetime | None = None,
                  run_key: str | None = None) -> dict | str:
        """Run ``name`` once for its run key (default: the local day). Returns the run's
        stats, ``DONE`` if it already ran, or ``BUSY`` if another instance holds it."""
        fn = JOBS[name]
        now = now or self.clock()
        key: str | None = run_key
        async with self._local[name]:
            async with AsyncSession(self.engine, expire_on_commit=False) as session:
                try:
                    async with session.begin():
                        if self.postgres:
                            got = (await session.execute(
                                text("SELECT pg_try_advisory_xact_lock(:a, :b)"),
                                {"a": LOCK_NAMESPACE, "b": lock_key(name)})).scalar()
                            if not got:
                                log.info("job %s: another instance is running it", name)
                                return BUSY
                        rules = await self.load_rules(session)
                        key = key or rules.local_day(now)
                        done = (await session.execute(select(JobRun.id).where(
                            JobRun.name == name, JobRun.run_key == key))).first()
                        if done:
                            return DONE
                        org = await load_org(session)
                        rc = RunCtx(session=session, rules=rules, now=now, secret=self.secret,
                                    dialect=self.dialect, org=org)
                        started = self.clock()
                        stats = await fn(rc)
                        session.add(JobRun(name=name, run_key=key, instance=self.instance,
                                           detail=stats, started_at=started,
                                           finished_at=self.clock()))
                except OperationalError as exc:
                    # SQLite with several worker processes: the other process holds the write
                    # lock (or committed under our read snapshot); back off like on PG
                    if self.postgres or "locked" not in str(exc):
                        raise
                    log.info("job %s: database busy (another process runs it)", name)
                    return BUSY
                except IntegrityError:  # the other instance committed the same run first?
                    if key is None or not await self._ran(name, key):
                        raise
                    log.info("job %s %s: already run elsewhere", name, key)
                    return DONE
        log.info("job %s ran: %s", name, stats)
        if stats.get("cards") or stats.get("digests"):
            self.on_outbox()
        return stats
