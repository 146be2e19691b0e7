"""Engines from one URL: a sync engine (migrations, worker threads, the group-commit writer)
and an async one (handlers). SQLite gets WAL and a busy timeout on every connection."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def normalize(url: str) -> tuple[URL, URL]:
    """Return (sync URL, async URL) for a user-given database URL."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        sync, aio = u.set(drivername="sqlite"), u.set(drivername="sqlite+aiosqlite")
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        return sync, aio
    if backend in ("postgresql", "postgres"):
        return u.set(drivername="postgresql+psycopg"), u.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database: {backend} (use sqlite:// or postgresql://)")


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def sync_engine(url: str) -> Engine:
    sync, _ = normalize(url)
    eng = create_engine(sync, pool_pre_ping=not is_sqlite(url))
    if is_sqlite(url):
        event.listen(eng, "connect", _sqlite_pragmas)
    return eng


def async_engine(url: str) -> AsyncEngine:
    _, aio = normalize(url)
    if is_sqlite(url):
        eng = create_async_engine(aio, connect_args={"timeout": 10})
        event.listen(eng.sync_engine, "connect", _sqlite_pragmas)
        return eng
    # no pre-ping: it is a round trip per checkout on the hot path; recycle instead
    return create_async_engine(aio, pool_size=10, max_overflow=10, pool_recycle=1800)
