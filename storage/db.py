"""Engines from one URL: a sync engine (migrations, worker threads, the group-commit writer)
and an async one (handlers). SQLite gets WAL and a busy timeout on every connection.

A file-backed SQLite database keeps its inbox (``inbox_events``) in a second file beside it,
``<name>.inbox.db``, attached to every connection as schema ``inbox``: SQLite has one write
lock per file, and the acknowledgement of a callback waits for the inbox commit, so it must
never queue behind a handler's, a job's or an import's transaction on the business tables.
Queries name the table unqualified (SQLite resolves it in the attached file once migration
0005 has moved it out of the main file). PostgreSQL keeps everything in one database."""

from __future__ import annotations

from functools import cache
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


INBOX_SCHEMA = "inbox"


@cache
def _inbox_ddl() -> tuple[str, ...]:
    """The inbox file's table and index, compiled from storage.models.InboxEvent."""
    from sqlalchemy import MetaData
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    from storage.models import InboxEvent

    table = InboxEvent.__table__.to_metadata(MetaData(), schema=INBOX_SCHEMA)
    dialect = sqlite.dialect()
    return (str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)),
            *(str(CreateIndex(ix, if_not_exists=True).compile(dialect=dialect))
              for ix in table.indexes))


def inbox_file(url: str) -> str | None:
    """The inbox file of a file-backed SQLite database, else None (memory, PostgreSQL)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" \
            or u.database.startswith("file:"):
        return None
    db = Path(u.database)
    return str(db.with_name(db.stem + ".inbox.db" if db.suffix == ".db" else db.name + ".inbox"))


def inbox_attached(connection) -> bool:
    """This SQLAlchemy connection has the inbox file attached (file-backed SQLite)."""
    return connection.dialect.name == "sqlite" and any(
        row[1] == INBOX_SCHEMA for row in connection.exec_driver_sql("PRAGMA database_list"))


def sqlite_on_connect(url: str):
    """The ``connect`` listener for an SQLite engine of ``url``: pragmas, and the inbox file
    attached (created on first use)."""
    inbox = inbox_file(url)

    def setup(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        if inbox is not None:
            cur.execute("ATTACH DATABASE ? AS inbox", (inbox,))
            cur.execute("PRAGMA inbox.journal_mode=WAL")
            cur.execute("PRAGMA inbox.synchronous=NORMAL")
            for ddl in _inbox_ddl():
                cur.execute(ddl)
        cur.close()

    return setup


def sync_engine(url: str, server_settings: dict[str, str] | None = None) -> Engine:
    """``server_settings``: PostgreSQL session settings for every connection (ignored on
    SQLite)."""
    sync, _ = normalize(url)
    kw = {}
    if server_settings and not is_sqlite(url):
        kw["connect_args"] = {"options": " ".join(f"-c {k}={v}"
                                                  for k, v in server_settings.items())}
    eng = create_engine(sync, pool_pre_ping=not is_sqlite(url), **kw)
    if is_sqlite(url):
        event.listen(eng, "connect", sqlite_on_connect(url))
    return eng


def async_engine(url: str) -> AsyncEngine:
    _, aio = normalize(url)
    if is_sqlite(url):
        eng = create_async_engine(aio, connect_args={"timeout": 10})
        event.listen(eng.sync_engine, "connect", sqlite_on_connect(url))
        return eng
    # no pre-ping: it is a round trip per checkout on the hot path; recycle instead
    return create_async_engine(aio, pool_size=10, max_overflow=10, pool_recycle=1800)
