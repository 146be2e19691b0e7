"""SQLite's one write lock, handed over in order inside this process.

SQLite lets one transaction write at a time; the others wait in its busy handler, which
*sleeps* (1, 2, 5, 10 … 100 ms) and retries. Under a burst of taps, handler transactions
keep waking up to find another one holding the lock, so taps queue behind sleeps rather than
behind work. The gate is a FIFO in front of that lock: a connection takes it before its first
write statement and gives it back when it returns to the pool (after its commit or rollback).
Waiting is a hand-over, never a poll. (The inbox writer needs no turn: the inbox is its own file.)

It only schedules: SQLite's own lock still decides. A writer that cannot get the gate within
``timeout`` goes ahead without it (and SQLite's busy timeout applies as before), and other
processes (``--workers``) are not gated at all.
"""

from __future__ import annotations

import asyncio
import collections
import re
import threading

from sqlalchemy import event
from sqlalchemy.util import await_only

_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)
_KEY = "fieldbot_write_gate"


class WriteGate:
    def __init__(self, timeout: float = 5.0):
        self.timeout = timeout
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: collections.deque = collections.deque()

    # -- taking it ----------------------------------------------------------------------
    async def acquire(self) -> bool:
        """From the event loop; True if the gate is ours (then ``release`` it)."""
        loop = asyncio.get_running_loop()
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            fut = loop.create_future()
            waiter = (loop, fut)
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.timeout)
            return True
        except BaseException as exc:  # timeout or cancellation
            with self._mutex:
                try:
                    self._waiters.remove(waiter)
                    handed = False
                except ValueError:
                    handed = True
            if isinstance(exc, TimeoutError):
                return handed  # handed to us in the meantime: ours; else ungated
            if handed:
                self.release()
            raise

    def release(self) -> None:
        with self._mutex:
            if not self._waiters:
                self._held = False
                return
            loop, fut = self._waiters.popleft()  # ownership passes now, under the mutex
        try:
            loop.call_soon_threadsafe(_settle, fut)
        except RuntimeError:  # that loop is closed: nobody will take it
            self.release()

    # -- wiring -------------------------------------------------------------------------
    def install(self, async_engine) -> None:
        """Gate every write of ``async_engine`` (an SQLite ``AsyncEngine``)."""
        sync = async_engine.sync_engine

        @event.listens_for(sync, "before_cursor_execute")
        def _before(conn, _cursor, statement, _params, _context, _many):
            info = conn.info  # the pooled DBAPI connection's, cleared at check-in below
            if info.get(_KEY) or not _WRITE.match(statement):
                return
            if await_only(self.acquire()):
                info[_KEY] = True

        @event.listens_for(sync, "checkin")
        def _checkin(_dbapi_conn, record):
            if record is not None and record.info.pop(_KEY, False):
                self.release()

        @event.listens_for(sync, "invalidate")
        def _invalidate(_dbapi_conn, record, _exc):
            if record is not None and record.info.pop(_KEY, False):
                self.release()


def _settle(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(True)
    # a cancelled waiter that was handed the gate releases it itself (see ``acquire``)
