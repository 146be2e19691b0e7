"""The durable inbox: one writer thread with group commit.

A callback is acknowledged only after its row is committed (``INSERT … ON CONFLICT DO
NOTHING RETURNING id``): a platform retry or a concurrent duplicate finds the unique
``dedupe_key`` taken and is acknowledged without a second row. One writer committing every
pending row at once is what keeps SQLite at thousands of callbacks per second with the same
guarantee (see ../shared/RELIABILITY.md). On SQLite the table is in its own file
(storage/db.py), so this writer never waits for business transactions.

File-backed SQLite is written from the event loop's own thread: the rows that arrived in one
pass of the loop are committed in one transaction at the end of that pass (a WAL commit with
``synchronous=NORMAL`` costs tens of microseconds, no fsync). That saves the thread hand-over
per batch — a wake-up, and the GIL won back from the busy loop after every statement — which
cost more CPU than the insert itself. The loop never waits for a lock: its connection has no
busy timeout, and a batch that finds the file locked (another process's marks or sweep
lease) goes to the writer thread, which waits as before.

PostgreSQL is written by a task on the loop with asyncpg: one multi-row ``INSERT … SELECT
FROM unnest(…) ON CONFLICT DO NOTHING RETURNING`` in flight at a time, and whatever arrived
meanwhile goes in the next one. Same group commit, no thread and no GIL hand-over (the thread
with psycopg cost the web process a third of its CPU in hand-overs). A loop other than the
first one that used the inbox, and anything left at shutdown, uses the thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from contextlib import suppress
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine, make_url

from storage.db import inbox_file, is_sqlite, sync_engine

log = logging.getLogger(__name__)

_STOP = object()
_CHECKPOINT = object()  # to the writer thread: the loop wrote, checkpoint when due
CHECKPOINT_EVERY_S = 1.0
MAX_BATCH = 512
_INSERT = ("INSERT INTO inbox_events (dedupe_key, platform, payload, status, attempts, error,"
           " received_at, claimed_until) VALUES ")
_ROW_SQLITE = "(?, ?, ?, 'pending', 0, '', ?, ?)"
_ROW_PG = "(%s, %s, %s, 'pending', 0, '', %s, %s)"
_NOTHING = " ON CONFLICT (dedupe_key) DO NOTHING"
_MARK_SQLITE = ("UPDATE inbox_events SET status='done', done_at=?, attempts=attempts+1"
                " WHERE id IN (SELECT value FROM json_each(?)) AND status='pending'")
# One statement, one round trip, its own transaction (no BEGIN/COMMIT trips: on a busy loop
# every trip waits a turn of the loop): the "done" marks ride along in a data-modifying CTE.
_PG_UNNEST = ("WITH marked AS (UPDATE inbox_events SET status='done', done_at=$4,"
              " attempts=attempts+1 WHERE id = ANY($6::bigint[]) AND status='pending'"
              " RETURNING 1)"
              " INSERT INTO inbox_events (dedupe_key, platform, payload, status, attempts, error,"
              " received_at, claimed_until) SELECT k, p, b, 'pending', 0, '', $4, c"
              " FROM unnest($1::text[], $2::text[], $3::text[], $5::timestamptz[])"
              " AS t(k, p, b, c) ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key, id")
# Every execution planned with its own parameters. A prepared statement otherwise switches to
# a generic plan after five runs, costed on the statistics of that moment: on a fresh (empty)
# inbox that plan is a sequential scan for the done marks, kept for the connection's life — a
# full scan of the growing table per batch (measured: 600 rows read per row inserted after a
# minute, PostgreSQL at 80 % of a core). Planning this one statement costs ~0.1 ms a batch.
CUSTOM_PLANS = {"plan_cache_mode": "force_custom_plan"}
PG_CONNECT_S = 3.0
PG_WRITE_S = 10.0
_MARK_PG = ("UPDATE inbox_events SET status='done', done_at=%s, attempts=attempts+1"
            " WHERE id = ANY(%s) AND status='pending'")


class InboxUnavailable(RuntimeError):
    """The row could not be committed; the webhook answers 503 so the platform retries."""


class Inbox:
    def __init__(self, database_url: str, engine: Engine | None = None):
        self.url = database_url
        self.engine = engine or sync_engine(database_url, server_settings=CUSTOM_PLANS)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._sqlite = is_sqlite(database_url)
        self.batches = 0
        self.rows = 0
        self.inline_batches = 0  # of which written on the loop's thread
        # file-backed SQLite: write on the loop's thread (see the module's docstring)
        self.inline = self._sqlite and inbox_file(database_url) is not None
        self._pending: list = []
        self._flush_at: asyncio.Handle | None = None
        self._checkpoint_at = 0.0  # the loop asks the thread for a checkpoint from then on
        self._loop_conn = None
        # PostgreSQL: asyncpg on the first loop that uses the inbox (see the docstring)
        self.pg_async = not self._sqlite
        self._pg_loop: asyncio.AbstractEventLoop | None = None
        self._pg_conn = None
        self._pg_task: asyncio.Task | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._pending:  # the loop is gone or stopping: hand them to the thread
            for item in self._pending:
                self._q.put(item)
            self._pending = []
        task, conn, self._pg_task, self._pg_conn = self._pg_task, self._pg_conn, None, None
        with suppress(RuntimeError):  # that loop may be closed already
            if task is not None:
                task.cancel()
            if conn is not None:
                conn.terminate()
        self._pg_loop = None
        if self._thread is not None:
            self._q.put(_STOP)
            self._thread.join(timeout=10)
            self._thread = None
        self._drop_loop_conn()

    async def accept(self, dedupe_key: str, platform: str, payload: str,
                     lease_s: float = 0.0) -> int | None:
        """Commit the row; return its id if new, None if it was a duplicate.

        ``lease_s`` reserves a new row for this process (it is about to run it inline) so no
        sweeper elsewhere takes it meanwhile; after the lease anyone may finish it."""
        return await self._enqueue(dedupe_key, platform, payload, lease_s)

    async def _enqueue(self, key: str | None, platform: str | None, payload: str | int,
                       lease_s: float) -> int | None:
        """One item into the next batch; its result once that batch is committed."""
        if self._thread is None:
            raise InboxUnavailable("inbox writer not running")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._submit((key, platform, payload, lease_s, fut, loop), loop)
        return await fut

    def _submit(self, item: tuple, loop: asyncio.AbstractEventLoop) -> None:
        if self.pg_async and self._pg_loop in (None, loop):
            self._pg_loop = loop
            self._pending.append(item)
            if self._pg_task is None or self._pg_task.done():
                self._pg_task = loop.create_task(self._pg_drain(), name="inbox-pg-writer")
            return
        if not self.inline:
            self._q.put(item)
            return
        self._pending.append(item)
        if self._flush_at is None:  # after every callback this pass of the loop has ready
            self._flush_at = loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Commit this pass's rows on the loop's thread; a locked file → the thread."""
        batch, self._pending, self._flush_at = self._pending, [], None
        while batch:
            part, batch = batch[:MAX_BATCH], batch[MAX_BATCH:]
            try:
                if self._loop_conn is None:
                    self._loop_conn = self.engine.raw_connection()
                    cur = self._loop_conn.cursor()
                    # never sleep on the loop: a lock held elsewhere sends the batch to the
                    # thread; and no checkpoint on the loop (the thread runs them)
                    cur.execute("PRAGMA busy_timeout=0")
                    cur.execute("PRAGMA wal_autocheckpoint=0")
                    cur.close()
                results = self._write(self._loop_conn, part)
            except Exception as exc:  # noqa: BLE001 - locked, or broken: the thread decides
                log.debug("inbox: loop write deferred to the writer thread (%s)", exc)
                if "locked" not in str(exc):  # a lock held elsewhere leaves the conn fine
                    self._drop_loop_conn()
                for item in part:
                    self._q.put(item)
                continue
            self.inline_batches += 1
            self._settle(part, results, None)
            now = time.monotonic()
            if now >= self._checkpoint_at:  # (waking the thread per batch costs GIL hand-overs)
                self._checkpoint_at = now + CHECKPOINT_EVERY_S
                self._q.put(_CHECKPOINT)

    async def _pg_drain(self) -> None:
        """Write the pending rows, one statement in flight, until none are left."""
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                results, error = await self._pg_write(batch), None
            except Exception as exc:  # noqa: BLE001 - every waiter must be released
                log.warning("inbox write failed (%d rows): %s", len(batch), exc)
                results, error = None, exc
                conn, self._pg_conn = self._pg_conn, None
                if conn is not None:
                    conn.terminate()
            self._settle(batch, results, error)

    async def _pg_write(self, batch: list) -> list[int | None]:
        import asyncpg

        if self._pg_conn is None:
            self._pg_conn = await asyncpg.connect(_asyncpg_dsn(self.url), timeout=PG_CONNECT_S,
                                                  statement_cache_size=16,
                                                  server_settings=CUSTOM_PLANS)
        now = datetime.now(UTC)
        rows, done = _split(batch, now)
        got = await self._pg_conn.fetch(
            _PG_UNNEST, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], now,
            [r[3] for r in rows], done, timeout=PG_WRITE_S)
        return self._results(batch, {r[0]: r[1] for r in got})

    def _drop_loop_conn(self) -> None:
        _close_quietly(self._loop_conn)
        self._loop_conn = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    async def mark_done(self, inbox_id: int) -> None:
        """Mark a row done in the writer's next batch (bookkeeping after its handler's
        commit: that process's writer holds the inbox lock anyway, so a run never sleeps in
        SQLite's busy handler for it while holding the main file's lock)."""
        await self._enqueue(None, None, inbox_id, 0.0)  # (payload holds the row id)

    # -- writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        conn = None
        while True:
            item = self._q.get()
            if item is _STOP:
                break
            batch = [] if item is _CHECKPOINT else [item]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                if nxt is not _CHECKPOINT:
                    batch.append(nxt)
            if not batch:  # the loop wrote: keep its WAL short, off the loop's thread
                conn = self._checkpoint(conn)
                continue
            try:
                if conn is None:
                    conn = self.engine.raw_connection()
                results = self._write(conn, batch)
                error = None
            except Exception as exc:  # noqa: BLE001 - every waiter must be released
                log.warning("inbox write failed (%d rows): %s", len(batch), exc)
                results, error = None, exc
                _close_quietly(conn)
                conn = None
            self._release(batch, results, error)
            if stop:
                break
        if conn is not None:
            conn.close()

    def _checkpoint(self, conn):
        """A PASSIVE checkpoint of the inbox file (never blocks the loop's writes)."""
        try:
            if conn is None:
                conn = self.engine.raw_connection()
            cur = conn.cursor()
            cur.execute("PRAGMA inbox.wal_checkpoint(PASSIVE)")
            cur.fetchall()
            cur.close()
        except Exception as exc:  # noqa: BLE001 - the next one will do
            log.debug("inbox checkpoint failed: %s", exc)
        return conn

    def _write(self, conn, batch) -> list[int | None]:
        """One multi-row INSERT per batch, and on SQLite one read for the new ids: a handful
        of statements whatever the batch size. (Every statement a thread steps gives up the
        GIL and must win it back from the busy event loop, which takes up to the switch
        interval, 5 ms: a statement per row made a 30-row batch take ~10 ms.)"""
        now = datetime.now(UTC)
        stamp = _sqlite_ts(now) if self._sqlite else now
        rows, done = _split(batch, now)
        items = [(key, platform, payload, stamp,
                  _sqlite_ts(until) if (until and self._sqlite) else until)
                 for key, platform, payload, until in rows]
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
        return self._results(batch, ids)

    def _results(self, batch, ids: dict[str, int]) -> list[int | None]:
        """Each item's new id; a duplicate (in the table, or later in the batch) gets None."""
        self.batches += 1
        self.rows += len(batch)
        return [None if key is None else ids.pop(key, None) for key, *_rest in batch]

    @staticmethod
    def _settle(batch, results, error) -> None:
        """Release the waiters of a batch, on their own loop's thread."""
        for i, (_k, _p, _pl, _l, fut, _loop) in enumerate(batch):
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(InboxUnavailable(str(error)))
            else:
                fut.set_result(results[i])

    @classmethod
    def _release(cls, batch, results, error) -> None:
        """From the writer thread: each loop settles its own waiters (``_settle``)."""
        by_loop: dict = {}
        for i, item in enumerate(batch):
            part = by_loop.setdefault(item[5], ([], []))
            part[0].append(item)
            part[1].append(None if results is None else results[i])
        for loop, (items, res) in by_loop.items():
            try:
                loop.call_soon_threadsafe(cls._settle, items, res, error)
            except RuntimeError:  # loop closed during shutdown
                pass


def _split(batch: list, now: datetime) -> tuple[list[tuple], list[int]]:
    """A batch → the rows to insert as (key, platform, payload, lease end or None), the
    first of duplicate keys winning, and the ids of the rows to mark done."""
    rows: dict[str, tuple] = {}
    done: list[int] = []
    for key, platform, payload, lease_s, _fut, _loop in batch:
        if key is None:  # a mark_done item: payload holds the row id
            done.append(payload)
        elif key not in rows:
            rows[key] = (key, platform, payload,
                         now + timedelta(seconds=lease_s) if lease_s else None)
    return list(rows.values()), done


def _close_quietly(conn) -> None:
    """Close a DB-API connection that may already be broken."""
    if conn is not None:
        with suppress(Exception):
            conn.close()


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


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
