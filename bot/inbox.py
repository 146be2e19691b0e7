"""The durable inbox: one writer thread with group commit.

A callback is acknowledged only after its row is committed (``INSERT … ON CONFLICT DO
NOTHING RETURNING id``): a platform retry or a concurrent duplicate finds the unique
``dedupe_key`` taken and is acknowledged without a second row. One writer committing every
pending row at once is what keeps SQLite at thousands of callbacks per second with the same
guarantee (see ../shared/RELIABILITY.md); PostgreSQL uses the same path. On SQLite the table
is in its own file (storage/db.py), so this writer never waits for business transactions.
"""

from __future__ import annotations

import asyncio
import json
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
_INSERT = ("INSERT INTO inbox_events (dedupe_key, platform, payload, status, attempts, error,"
           " received_at, claimed_until) VALUES ")
_ROW_SQLITE = "(?, ?, ?, 'pending', 0, '', ?, ?)"
_ROW_PG = "(%s, %s, %s, 'pending', 0, '', %s, %s)"
_NOTHING = " ON CONFLICT (dedupe_key) DO NOTHING"
_MARK_SQLITE = ("UPDATE inbox_events SET status='done', done_at=?, attempts=attempts+1"
                " WHERE id IN (SELECT value FROM json_each(?)) AND status='pending'")
_MARK_PG = ("UPDATE inbox_events SET status='done', done_at=%s, attempts=attempts+1"
            " WHERE id = ANY(%s) AND status='pending'")


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

    @property
    def running(self) -> bool:
        return self._thread is not None

    async def mark_done(self, inbox_id: int) -> None:
        """Mark a row done in the writer's next batch (bookkeeping after its handler's
        commit: that process's writer holds the inbox lock anyway, so a run never sleeps in
        SQLite's busy handler for it while holding the main file's lock)."""
        if self._thread is None:
            raise InboxUnavailable("inbox writer not running")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._q.put((None, None, inbox_id, 0.0, fut, loop))
        await fut

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
                results = self._write(conn, batch)
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
        """One multi-row INSERT per batch, and on SQLite one read for the new ids: a handful
        of statements whatever the batch size. (Every statement a thread steps gives up the
        GIL and must win it back from the busy event loop, which takes up to the switch
        interval, 5 ms: a statement per row made a 30-row batch take ~10 ms.)"""
        now = datetime.now(UTC)
        stamp = _sqlite_ts(now) if self._sqlite else now
        rows: dict[str, tuple] = {}  # the first of duplicate keys within the batch wins
        done: list[int] = []
        for key, platform, payload, lease_s, _fut, _loop in batch:
            if key is None:  # a mark_done item: payload holds the row id
                done.append(payload)
            elif key not in rows:
                until = now + timedelta(seconds=lease_s) if lease_s else None
                lease = _sqlite_ts(until) if (until and self._sqlite) else until
                rows[key] = (key, platform, payload, stamp, lease)
        items = list(rows.values())
        cur = conn.cursor()
        try:
            if self._sqlite:
                ids = {}
                for part in _chunks(items, 150):
                    cur.execute(_INSERT + ", ".join([_ROW_SQLITE] * len(part)) + _NOTHING,
                                [v for row in part for v in row])
                    if cur.rowcount > 0:  # one statement's new rows have consecutive ids
                        got = cur.execute(
                            "SELECT json_group_array(json_array(dedupe_key, id))"
                            " FROM inbox_events WHERE id BETWEEN ? AND ?",
                            (cur.lastrowid - cur.rowcount + 1, cur.lastrowid)).fetchone()[0]
                        ids.update(json.loads(got))
            else:
                ids = {}
                for part in _chunks(items, 500):
                    cur.execute(_INSERT + ", ".join([_ROW_PG] * len(part)) + _NOTHING
                                + " RETURNING dedupe_key, id", [v for row in part for v in row])
                    ids.update(cur.fetchall())
            if done:
                cur.execute(_MARK_SQLITE if self._sqlite else _MARK_PG,
                            (stamp, json.dumps(done) if self._sqlite else done))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.close()
        results: list[int | None] = []
        for key, *_rest in batch:  # a later duplicate of a key in the batch gets None
            results.append(None if key is None else ids.pop(key, None))
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


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


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
