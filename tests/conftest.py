"""Suite-wide fixtures: a fresh database per test on SQLite and PostgreSQL, loopback only.

PostgreSQL: a throw-away database per test on 127.0.0.1:5432 (user postgres, trust auth). Under
``CI=true`` a missing PostgreSQL is a failure, not a skip.

The clock: a test whose outcome depends on today's date is marked ``dates`` (module-wide with
``pytestmark``) and runs with the clock moved to ``FIELDBOT_TEST_NOW`` (ISO 8601 with an offset;
default ``DEFAULT_NOW``), ticking from there, so it never reads the wall clock for its
expectations. ``scripts/test.sh`` runs the ``dates`` tests again at the awkward dates in
``tests/dates.txt`` (month ends, 29 February, 31 December, a Monday, 23:59:30 Shanghai).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime

import pytest

PG_ADMIN = os.environ.get("FIELDBOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def _no_network(monkeypatch) -> None:
    """Sockets may only reach loopback: a test that calls a real platform fails loudly."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("::1", "localhost")
                                          or host.startswith("/")):
            raise RuntimeError(f"test tried to reach {address!r}: loopback only")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    _no_network(monkeypatch)


DEFAULT_NOW = "2026-06-15T10:00:00+08:00"


def test_now() -> datetime:
    """The instant ``dates`` tests run at: ``FIELDBOT_TEST_NOW`` or ``DEFAULT_NOW``."""
    raw = os.environ.get("FIELDBOT_TEST_NOW") or DEFAULT_NOW
    at = datetime.fromisoformat(raw)
    if at.tzinfo is None:
        raise pytest.UsageError(f"FIELDBOT_TEST_NOW needs a UTC offset: {raw!r}")
    return at


test_now.__test__ = False  # a helper, not a test


@pytest.fixture(autouse=True)
def _frozen_clock(request):
    """``dates`` tests run on a fixed day (ticking from ``test_now()``), never the wall clock."""
    if request.node.get_closest_marker("dates") is None:
        yield None
        return
    import time_machine

    with time_machine.travel(test_now(), tick=True) as traveller:
        yield traveller


def make_pg_database() -> str:
    import psycopg

    name = f"fb_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty database URL; the suite's storage tests run on both engines."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fieldbot.db'}"
        return
    if not _pg_available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (required under CI)")
        pytest.skip("PostgreSQL not reachable")
    url = make_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'fieldbot.db'}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
