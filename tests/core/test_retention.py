"""Retention: handled callbacks past FIELDBOT_INBOX_KEEP_DAYS go (rows and their guards);
pending, failed and recent ones stay; a re-run deletes nothing more. Sent messages past
FIELDBOT_OUTBOX_KEEP_DAYS go unless an open approval card needs them. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import DateTime, bindparam, text
from sqlmodel import Session

from bot.inbox import Inbox
from storage.approval_models import ApprovalCard
from storage.db import async_engine, sync_engine
from storage.migrate import upgrade
from storage.models import ApprovalRequest, OutboxMessage, User
from storage.retention import purge_inbox, purge_outbox

pytestmark = pytest.mark.dates  # expectations relative to today: see tests/conftest.py

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
_SET = text("UPDATE inbox_events SET received_at=:t, status=:s, done_at=:t WHERE id=:id"
            ).bindparams(bindparam("t", type_=DateTime(timezone=True)))
_GUARD = text("INSERT INTO inbox_done (dedupe_key, done_at) VALUES (:k, :t)"
              ).bindparams(bindparam("t", type_=DateTime(timezone=True)))


@pytest.fixture
async def filled(db_url):
    """Rows through the real inbox, then aged: ids grow with received_at as in production.
    12 days old: 23 done, 2 pending, 1 failed; 3 days old: 10 done; today: 4 pending."""
    upgrade(db_url)
    box = Inbox(db_url)
    box.start()
    try:
        plan = ([(12, "done")] * 10 + [(12, "pending")] * 2 + [(12, "done")] * 13
                + [(12, "failed")] + [(3, "done")] * 10 + [(0, "pending")] * 4)
        ids = [await box.accept(f"wecom:corp:{i}", "wecom", "{}") for i in range(len(plan))]
    finally:
        box.stop()
        box.engine.dispose()
    eng = sync_engine(db_url)
    with eng.begin() as conn:
        for (age, status), (i, row_id) in zip(plan, enumerate(ids), strict=True):
            t = NOW - timedelta(days=age, minutes=len(plan) - i)
            conn.execute(_SET, {"t": t, "s": status, "id": row_id})
            if status == "done":
                conn.execute(_GUARD, {"k": f"wecom:corp:{i}", "t": t})
    yield db_url, eng, plan
    eng.dispose()


def _left(eng) -> tuple[list, set]:
    with eng.connect() as conn:
        rows = conn.execute(text("SELECT dedupe_key, status FROM inbox_events ORDER BY id")).all()
        guards = {r[0] for r in conn.execute(text("SELECT dedupe_key FROM inbox_done"))}
    return [tuple(r) for r in rows], guards


async def test_purge_drops_only_old_handled_callbacks(filled):
    url, eng, plan = filled
    engine = async_engine(url)
    try:
        assert await purge_inbox(engine, NOW, days=7, chunk=4) == 23  # several chunks
        rows, guards = _left(eng)
        want = [(f"wecom:corp:{i}", s) for i, (age, s) in enumerate(plan)
                if not (age == 12 and s == "done")]
        assert rows == want
        assert guards == {f"wecom:corp:{i}" for i, (age, s) in enumerate(plan)
                          if age == 3 and s == "done"}
        assert await purge_inbox(engine, NOW, days=7) == 0  # nothing more, nothing else
        assert _left(eng) == (rows, guards)
        assert await purge_inbox(engine, NOW, days=0) == 0  # 0 keeps everything
        assert await purge_inbox(engine, NOW, days=2) == 10  # the 3-day-old handled ones
        rows, guards = _left(eng)
        assert sorted({s for _k, s in rows}) == ["failed", "pending"] and guards == set()
    finally:
        await engine.dispose()


async def test_purge_on_an_empty_inbox(db_url):
    upgrade(db_url)
    engine = async_engine(db_url)
    try:
        assert await purge_inbox(engine, NOW, days=7) == 0
    finally:
        await engine.dispose()


async def test_a_purged_key_is_new_again_and_the_inbox_keeps_working(filled):
    """What the window means: after the purge the platform's retry would be a new row.
    The inbox (its loop writer on SQLite) goes on accepting between and after the chunks."""
    url, eng, _plan = filled
    engine = async_engine(url)
    box = Inbox(url)
    box.start()
    try:
        assert await purge_inbox(engine, NOW, days=7, chunk=5) == 23
        assert isinstance(await box.accept("wecom:corp:0", "wecom", "{}"), int)
        assert await box.accept("wecom:corp:30", "wecom", "{}") is None  # kept: still a dup
    finally:
        box.stop()
        box.engine.dispose()
        await engine.dispose()


async def test_outbox_purge_keeps_pending_dead_recent_and_open_cards(db_url):
    """40 days old: 6 sent, 1 dead, 1 still pending (retrying), and 2 sent cards of an
    approval, one of them still open; 5 days old: 3 sent. Keep 30 days."""
    upgrade(db_url)
    eng = sync_engine(db_url)
    plan = ([(40, "sent")] * 3 + [(40, "dead"), (40, "pending")] + [(40, "sent")] * 3
            + [(40, "card-open"), (40, "card-closed")] + [(5, "sent")] * 3)
    with Session(eng) as s:
        rep = User(name="张三")
        s.add(rep)
        s.flush()
        req = ApprovalRequest(kind="quote", requester_id=rep.id, amount=80000)
        s.add(req)
        s.flush()
        for i, (age, what) in enumerate(plan):
            t = NOW - timedelta(days=age, minutes=len(plan) - i)
            status = "sent" if what.startswith("card") else what
            s.add(OutboxMessage(idem_key=f"m{i}", platform="feishu", target={}, message={},
                                status=status, created_at=t, next_at=t,
                                sent_at=t if status == "sent" else None,
                                result={"message_id": f"om_{i}"}))
            if what.startswith("card"):
                s.add(ApprovalCard(request_id=req.id, seq=1, user_id=rep.id, outbox_key=f"m{i}",
                                   closed=what == "card-closed"))
        s.commit()
    engine = async_engine(db_url)
    try:
        assert await purge_outbox(engine, NOW, days=30, chunk=2) == 7  # several chunks
        with eng.connect() as conn:
            left = [r[0] for r in conn.execute(text("SELECT idem_key FROM outbox ORDER BY id"))]
        want = [f"m{i}" for i, (age, what) in enumerate(plan)
                if age == 5 or what in ("dead", "pending", "card-open")]
        assert left == want
        assert await purge_outbox(engine, NOW, days=30) == 0
        assert await purge_outbox(engine, NOW, days=0) == 0  # 0 keeps everything
        assert await purge_outbox(engine, NOW, days=2) == 3  # the 5-day-old sent ones
    finally:
        await engine.dispose()
        eng.dispose()
