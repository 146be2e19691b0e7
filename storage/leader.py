"""One leader among instances: a session-level PostgreSQL advisory lock on its own connection.

``SessionLeader(url, name)``: ``acquire()`` waits until this instance holds
``pg_try_advisory_lock(LEADER_NAMESPACE, crc32(name))`` on a dedicated AUTOCOMMIT connection
(never idle in a transaction); ``watch()`` returns when the lock is lost (the connection died:
the server restarted, a network cut, ``pg_terminate_backend``) so the holder steps down;
``release()`` unlocks and closes. ``grace_s`` (3 polls): how long a new leader should wait
before acting, so a holder that lost its lock connection without dying has noticed (its
``watch`` query times out after one poll) and stepped down — no overlap. The lock belongs
to the connection, so a holder that dies (kill -9, a crash) frees it as soon as PostgreSQL
sees its socket close, and another instance's ``acquire()`` takes over within
``poll_s + grace_s``. Used for what must exist once per site (the WeCom AI
bot's single long connection); on SQLite there is one instance, and no leader is needed.
"""

from __future__ import annotations

import asyncio
import logging
import zlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from storage.db import normalize

log = logging.getLogger(__name__)

LEADER_NAMESPACE = 0x4642000E  # "FB", issue 14


def _key(name: str) -> int:
    v = zlib.crc32(name.encode())
    return v - 2**32 if v >= 2**31 else v


class SessionLeader:
    def __init__(self, url: str, name: str, poll_s: float = 2.0):
        self.name = name
        self.poll_s = poll_s
        self._key = _key(name)
        self._url = normalize(url)[1]
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None
        self.held = False
        self._warned = False
        self.grace_s = 3 * poll_s

    async def _connection(self) -> AsyncConnection:
        if self._engine is None:
            self._engine = create_async_engine(self._url, poolclass=NullPool)
        if self._conn is None:
            conn = await self._engine.connect()
            self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self.held = False
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close
                await conn.invalidate()

    async def acquire(self) -> None:
        """Wait until this instance is the leader."""
        while True:
            try:
                conn = await self._connection()
                got = (await conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"),
                                          {"a": LEADER_NAMESPACE, "b": self._key})).scalar()
                self._warned = False
                if got:
                    self.held = True
                    log.info("leader %s: this instance holds it", self.name)
                    return
            except Exception as exc:  # noqa: BLE001 - the database is away: try again
                if not self._warned:
                    log.warning("leader %s: cannot reach the database (%s); retrying",
                                self.name, exc.__class__.__name__)
                    self._warned = True
                await self._drop()
            await asyncio.sleep(self.poll_s)

    async def watch(self) -> None:
        """Return when the lock is no longer ours (its connection failed)."""
        while True:
            await asyncio.sleep(self.poll_s)
            conn = self._conn
            if conn is None:
                return
            try:
                async with asyncio.timeout(self.poll_s):
                    await conn.execute(text("SELECT 1"))
            except Exception as exc:  # noqa: BLE001 - any failure: the lock may be gone
                log.warning("leader %s: lock connection lost (%s); stepping down",
                            self.name, exc.__class__.__name__)
                await self._drop()
                return

    async def release(self) -> None:
        if self._conn is not None and self.held:
            try:
                await self._conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"),
                                         {"a": LEADER_NAMESPACE, "b": self._key})
            except Exception as exc:  # noqa: BLE001 - closing the connection frees it anyway
                log.info("leader %s: unlock failed (%s); closing frees it",
                         self.name, exc.__class__.__name__)
        await self._drop()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


class FileLeader:
    """The same role on one host (SQLite): an exclusive ``flock`` on a file in the data
    directory, so of several worker processes one holds the connection. The kernel frees the
    lock when its holder dies (kill -9 included); it cannot be lost while the holder lives."""

    def __init__(self, path, name: str, poll_s: float = 2.0):
        import re
        from pathlib import Path

        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100]
        self.path = Path(path) / f"leader-{safe}.lock"
        self.name = name
        self.poll_s = poll_s
        self.grace_s = 0.0  # the previous holder is dead when its lock is free
        self.held = False
        self._fd: int | None = None

    def _try(self) -> bool:
        import fcntl
        import os

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def acquire(self) -> None:
        while not self._try():
            await asyncio.sleep(self.poll_s)
        self.held = True
        log.info("leader %s: this process holds it", self.name)

    async def watch(self) -> None:
        await asyncio.Event().wait()  # held until released or the process ends

    async def release(self) -> None:
        import os

        fd, self._fd = self._fd, None
        self.held = False
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock
