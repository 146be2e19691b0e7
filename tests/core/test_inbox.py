"""The durable inbox: new → id, duplicate → None, group commit under load, and a fast
``InboxUnavailable`` (never a hang, never a false ack) when the database is gone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.inbox import Inbox, InboxUnavailable
from storage.db import inbox_file, sync_engine
from storage.migrate import upgrade
from tests.conftest import free_port


@pytest.fixture
def inbox(db_url):
    upgrade(db_url)
    box = Inbox(db_url)
    box.start()
    yield box
    box.stop()
    box.engine.dispose()


def rows(url: str, where: str = "1=1") -> list:
    eng = sync_engine(url)
    try:
        with eng.connect() as conn:
            return conn.execute(text(f"SELECT id, dedupe_key, platform, payload, status "
                                     f"FROM inbox_events WHERE {where} ORDER BY id")).all()
    finally:
        eng.dispose()


async def test_accept_new_then_duplicate(inbox, db_url):
    first = await inbox.accept("wecom:corp:1", "wecom", '{"a":1}')
    assert isinstance(first, int)
    assert await inbox.accept("wecom:corp:1", "wecom", '{"a":2}') is None
    second = await inbox.accept("wecom:corp:2", "wecom", "{}")
    assert isinstance(second, int) and second != first
    stored = rows(db_url)
    assert [(r.dedupe_key, r.payload, r.status) for r in stored] == [
        ("wecom:corp:1", '{"a":1}', "pending"), ("wecom:corp:2", "{}", "pending")]


async def test_retry_storm_same_key_gives_one_id(inbox, db_url):
    results = await asyncio.gather(*(inbox.accept("feishu:cli:evt", "feishu", "{}")
                                     for _ in range(200)))
    ids = [r for r in results if r is not None]
    assert len(ids) == 1
    assert len(rows(db_url)) == 1


async def test_many_distinct_keys_group_commit(inbox, db_url):
    t0 = time.monotonic()
    results = await asyncio.gather(*(inbox.accept(f"dingtalk:app:{i}", "dingtalk", "{}")
                                     for i in range(2000)))
    elapsed = time.monotonic() - t0
    assert all(isinstance(r, int) for r in results)
    assert len(set(results)) == 2000
    assert len(rows(db_url)) == 2000
    assert inbox.rows == 2000
    assert 1 <= inbox.batches < 2000, "rows were committed one by one: no group commit"
    assert inbox.rows / inbox.batches > 1
    assert elapsed < 15


async def test_not_started_is_unavailable(db_url):
    upgrade(db_url)
    box = Inbox(db_url)
    try:
        with pytest.raises(InboxUnavailable):
            await box.accept("k", "wecom", "{}")
    finally:
        box.engine.dispose()


async def test_postgres_unreachable_is_unavailable_fast():
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"  # nobody listens there
    box = Inbox(url)
    box.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(InboxUnavailable):
            await asyncio.wait_for(box.accept("k", "wecom", "{}"), 5)
        # and again: the writer is still alive and keeps answering
        with pytest.raises(InboxUnavailable):
            await asyncio.wait_for(box.accept("k2", "wecom", "{}"), 5)
        assert time.monotonic() - t0 < 5
    finally:
        box.stop()
        box.engine.dispose()


async def test_sqlite_unwritable_is_unavailable_then_recovers(tmp_path):
    """An inbox file that is not a database fails every waiter with InboxUnavailable; once
    the file is fixed the same writer works again (and makes the inbox table itself)."""
    url = f"sqlite:///{tmp_path / 'fieldbot.db'}"
    upgrade(url)
    bad = Path(inbox_file(url))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{bad}{suffix}").unlink(missing_ok=True)
    bad.write_bytes(b"this is not a sqlite database" * 100)
    box = Inbox(url)
    box.start()
    try:
        results = await asyncio.wait_for(asyncio.gather(
            *(box.accept(f"k{i}", "wecom", "{}") for i in range(5)), return_exceptions=True), 5)
        assert all(isinstance(r, InboxUnavailable) for r in results)
        box.engine.dispose()  # pooled connections still hold the bad file open
        bad.unlink()
        assert isinstance(await asyncio.wait_for(box.accept("k0", "wecom", "{}"), 5), int)
    finally:
        box.stop()
        box.engine.dispose()


async def test_sqlite_garbage_file_is_unavailable(tmp_path):
    path = tmp_path / "fieldbot.db"
    path.write_bytes(b"this is not a sqlite database" * 100)
    box = Inbox(f"sqlite:///{path}")
    box.start()
    try:
        with pytest.raises(InboxUnavailable):
            await asyncio.wait_for(box.accept("k", "wecom", "{}"), 5)
    finally:
        box.stop()
        box.engine.dispose()


async def test_sqlite_locked_inbox_never_blocks_the_loop(tmp_path):
    """The loop writes the inbox itself; when another process holds the inbox file's lock,
    the batch goes to the writer thread (which waits for it) and the loop stays free."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'fieldbot.db'}"
    upgrade(url)
    box = Inbox(url)
    box.start()
    other = sqlite3.connect(inbox_file(url), isolation_level=None)
    try:
        assert box.inline
        assert isinstance(await box.accept("k0", "wecom", "{}"), int)  # on the loop
        assert box.inline_batches == 1
        other.execute("BEGIN IMMEDIATE")  # another process's transaction on the inbox file
        loop = asyncio.get_running_loop()
        pending = asyncio.ensure_future(box.accept("k1", "wecom", "{}"))
        lags = []
        for _ in range(10):  # the loop keeps turning while the row waits for the lock
            t0 = loop.time()
            await asyncio.sleep(0.02)
            lags.append(loop.time() - t0 - 0.02)
        assert not pending.done()
        # (blocked on the lock, the loop would stall until its busy timeout, seconds)
        assert max(lags) < 0.5
        other.execute("COMMIT")
        new_id = await asyncio.wait_for(pending, 5)
        assert isinstance(new_id, int)
        assert box.inline_batches == 1  # that one went through the thread
        assert await box.accept("k1", "wecom", "{}") is None  # and it is durable
        assert [r.dedupe_key for r in rows(url)] == ["k0", "k1"]
    finally:
        other.close()
        box.stop()
        box.engine.dispose()


async def test_postgres_done_marks_never_scan_the_whole_inbox(db_url):
    """A prepared statement's generic plan, made on a fresh (empty) inbox, would read the whole
    table for the done marks of every batch as it grows. Each batch is planned with its own
    parameters: with 20k rows in the table, batches add no sequential scan."""
    if db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL planning")
    upgrade(db_url)
    eng = sync_engine(db_url)

    def stats() -> tuple[int, int]:
        with eng.connect() as c:
            c.execute(text("SELECT pg_stat_clear_snapshot()"))
            row = c.execute(text("SELECT seq_scan, n_tup_ins FROM pg_stat_user_tables "
                                 "WHERE relname='inbox_events'")).one()
            return int(row[0] or 0), int(row[1] or 0)

    async def settled(inserted: int) -> int:  # an idle session reports within ~10 s
        for _ in range(400):
            scans, ins = stats()
            if ins >= inserted:
                return scans
            await asyncio.sleep(0.05)
        raise AssertionError("table statistics never caught up")

    with eng.begin() as c:
        c.execute(text("ANALYZE inbox_events"))  # the statistics of an empty table
    box = Inbox(db_url)
    box.start()
    try:
        n = 0
        for i in range(8):  # past the five runs after which a generic plan may be cached
            new_id = await box.accept(f"wecom:corp:w{i}", "wecom", "{}")
            await box.mark_done(new_id)
            n += 1
        with eng.begin() as c:
            c.execute(text(
                "INSERT INTO inbox_events (dedupe_key, platform, payload, status, attempts,"
                " error, received_at) SELECT 'bulk:' || g, 'wecom', '{}', 'pending', 0, '',"
                " now() FROM generate_series(1, 20000) g"))
        n += 20000
        before = await settled(n)
        for i in range(6):
            new_id = await box.accept(f"wecom:corp:a{i}", "wecom", "{}")
            await box.mark_done(new_id)
            n += 1
        after = await settled(n)
        assert after == before, f"{after - before} sequential scans of the inbox in 6 batches"
    finally:
        box.stop()
        box.engine.dispose()
        eng.dispose()
