"""The durable inbox: one writer thread with group commit.

A callback is acknowledged only after its row is committed (``INSERT … ON CONFLICT DO
NOTHING RETURNING id``): a platform retry or a concurrent duplicate finds the unique
``dedupe_key`` taken and is acknowledged without a second row. One writer committing every
pending row at once is what keeps SQLite at thousands of callbacks per second with the same
guarantee (see ../shared/RELIABILITY.md); PostgreSQL uses the same path.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from storage.db import is_sqlite, sync_engine

log = logging.getLogger(__name__)

_STOP = object()
MAX_BATCH = 512


class InboxUnavailable(RuntimeError):
    """The row could not be committed; the webhook answers 503 so the platform retries."""


class Inbox:
    def __init__(self, database_url: str, engine: Engine | None = None):
        self.url = database_url
        self.engine = engine or sync_engine(database_url)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._sqlite = is_sqlite(database_url)
        self.batches = 0
        self.rows = 0
        self.gate = None  # bot.writegate.WriteGate on SQLite: this writer's turn at the lock

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._q.put(_STOP)
            self._thread.join(timeout=10)
            self._thread = None

    async def accept(self, dedupe_key: str, platform: str, payload: str,
                     lease_s: float = 0.0) -> int | None:
        """Commit the row; return its id if new, None if it was a duplicate.

        ``lease_s`` reserves a new row for this process (it is about to run it inline) so no
        sweeper elsewhere takes it meanwhile; after the lease anyone may finish it."""
        if self._thread is None:
            raise InboxUnavailable("inbox writer not running")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._q.put((dedupe_key, platform, payload, lease_s, fut, loop))
        return await fut

    # -- writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        conn = None
        while True:
            item = self._q.get()
            if item is _STOP:
                break
            batch = [item]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            try:
                if conn is None:
                    conn = self.engine.raw_connection()
                owned = self.gate is not None and self.gate.acquire_sync(first=True)
                try:
                    results = self._write(conn, batch)
                finally:
                    if owned:
                        self.gate.release()
                error = None
            except Exception as exc:  # noqa: BLE001 - every waiter must be released
                log.warning("inbox write failed (%d rows): %s", len(batch), exc)
                results, error = None, exc
                try:
                    if conn is not None:
                        conn.close()
                except Exception:  # noqa: BLE001, S110
                    pass
                conn = None
            self._release(batch, results, error)
            if stop:
                break
        if conn is not None:
            conn.close()

    def _write(self, conn, batch) -> list[int | None]:
        now = datetime.now(UTC)
        cur = conn.cursor()
        results: list[int | None] = []
        if self._sqlite:
            sql = ("INSERT INTO inbox_events (dedupe_key, platform, payload, status, attempts,"
                   " error, received_at, claimed_until) VALUES (?, ?, ?, 'pending', 0, '', ?, ?)"
                   " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id")
            stamp = _sqlite_ts(now)
        else:
            sql = ("INSERT INTO inbox_events (dedupe_key, platform, payload, status, attempts,"
                   " error, received_at, claimed_until)"
                   " VALUES (%s, %s, %s, 'pending', 0, '', %s, %s)"
                   " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id")
            stamp = now
        for key, platform, payload, lease_s, _fut, _loop in batch:
            lease = None
            if lease_s:
                until = now + timedelta(seconds=lease_s)
                lease = _sqlite_ts(until) if self._sqlite else until
            cur.execute(sql, (key, platform, payload, stamp, lease))
            row = cur.fetchone()
            results.append(row[0] if row else None)
        conn.commit()
        cur.close()
        self.batches += 1
        self.rows += len(batch)
        return results

    @staticmethod
    def _release(batch, results, error) -> None:
        by_loop: dict = {}
        for i, (_k, _p, _pl, _l, fut, loop) in enumerate(batch):
            by_loop.setdefault(loop, []).append((fut, None if results is None else results[i]))

        def settle(items):
            for fut, res in items:
                if fut.done():
                    continue
                if error is not None:
                    fut.set_exception(InboxUnavailable(str(error)))
                else:
                    fut.set_result(res)

        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(settle, items)
            except RuntimeError:  # loop closed during shutdown
                pass


def _sqlite_ts(value: datetime) -> str:
    """The text form SQLAlchemy itself stores in SQLite (UTC, no offset), so comparisons hold."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def wait_for_db(engine: Engine, timeout: float = 30.0) -> None:
    """Block until the database answers (PostgreSQL may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect():
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
