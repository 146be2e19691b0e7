"""The schema as Alembic builds it: complete, idempotent, equal to the models, and enforcing
the unique keys the reliability story depends on. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from storage.db import async_engine, inbox_file, is_sqlite, sync_engine
from storage.migrate import alembic_config, include_object, load_all_models, render_item, upgrade
from storage.models import Identity, InboxEvent, OutboxMessage, User

load_all_models()  # storage/models.py and every storage/*_models.py

HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
CORE = {
    "teams", "users", "identities", "chats", "customers", "customer_aliases", "contacts",
    "deals", "invoices", "payments", "visits", "approval_requests", "approval_steps",
    "chat_messages", "inbox_events", "outbox", "jobs", "audit_log", "tasks", "rules",
}


@pytest.fixture
def engine(db_url):
    upgrade(db_url)
    eng = sync_engine(db_url)
    yield eng
    eng.dispose()


def test_upgrade_creates_all_tables_and_is_idempotent(db_url):
    upgrade(db_url)
    eng = sync_engine(db_url)
    try:
        tables = set(inspect(eng).get_table_names())
        if inbox_file(db_url):  # file-backed SQLite: the inbox is in its own attached file
            assert "inbox_events" not in tables
            assert "inbox_events" in inspect(eng).get_table_names(schema="inbox")
            tables.add("inbox_events")
        assert CORE <= set(SQLModel.metadata.tables)
        assert set(SQLModel.metadata.tables) | {"alembic_version"} == tables
        upgrade(db_url)  # second run: no error, nothing changes
        with eng.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
                (HEAD,)]
        assert set(inspect(eng).get_table_names()) | (
            {"inbox_events"} if inbox_file(db_url) else set()) == tables
    finally:
        eng.dispose()


def test_migration_matches_models(engine):
    with engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"compare_type": True,
                                                    "compare_server_default": False,
                                                    "include_object": include_object(conn)})
        diff = compare_metadata(mc, SQLModel.metadata)
    assert diff == [], f"models and migrations differ (alembic revision --autogenerate):\n{diff}"


def test_identity_unique_per_platform_and_user_on_two_platforms(engine):
    with Session(engine) as s:
        u = User(name="张三")
        s.add(u)
        s.commit()
        s.refresh(u)
        s.add(Identity(user_id=u.id, platform="wecom", app_id="corp1", external_id="zhangsan"))
        s.add(Identity(user_id=u.id, platform="feishu", app_id="cli_1", external_id="ou_123"))
        # the same external id on another platform/app is someone else's namespace: fine
        s.add(Identity(user_id=u.id, platform="feishu", app_id="cli_1", external_id="zhangsan"))
        s.commit()
        found = s.exec(select(User).join(Identity, Identity.user_id == User.id).where(
            Identity.platform == "feishu", Identity.external_id == "ou_123")).one()
        assert found.id == u.id
        assert len(s.exec(select(Identity).where(Identity.user_id == u.id)).all()) == 3

        s.add(Identity(user_id=u.id, platform="wecom", app_id="corp1", external_id="zhangsan"))
        with pytest.raises(IntegrityError):
            s.commit()


def test_inbox_dedupe_key_unique(engine):
    with Session(engine) as s:
        s.add(InboxEvent(dedupe_key="wecom:c:1", platform="wecom", payload="{}"))
        s.commit()
        s.add(InboxEvent(dedupe_key="wecom:c:1", platform="wecom", payload="{}"))
        with pytest.raises(IntegrityError):
            s.commit()


def test_outbox_idem_key_unique(engine):
    with Session(engine) as s:
        s.add(OutboxMessage(idem_key="in:1:1", platform="wecom", target={"a": 1},
                            message={"kind": "text"}))
        s.commit()
        row = s.exec(select(OutboxMessage)).one()
        assert row.target == {"a": 1}  # JSON round trip
        assert row.next_at.tzinfo is not None
        s.add(OutboxMessage(idem_key="in:1:1", platform="wecom"))
        with pytest.raises(IntegrityError):
            s.commit()


def test_sqlite_runs_in_wal_mode(sqlite_url):
    upgrade(sqlite_url)
    eng = sync_engine(sqlite_url)
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar().lower() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        eng.dispose()


async def test_async_engine_sqlite_wal(sqlite_url):
    upgrade(sqlite_url)
    eng = async_engine(sqlite_url)
    try:
        async with eng.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        assert mode.lower() == "wal"
    finally:
        await eng.dispose()


def test_autogenerate_renders_plain_types():
    """A generated migration must not reference storage.models (frozen scripts)."""
    from alembic.autogenerate import render_python_code
    from alembic.operations import ops

    table = SQLModel.metadata.tables["outbox"]
    code = render_python_code(ops.UpgradeOps(ops=[ops.CreateTableOp.from_table(table)]),
                              render_item=render_item)
    assert "storage" not in code
    assert "sa.DateTime(timezone=True)" in code


def test_sqlite_inbox_lives_in_its_own_file(sqlite_url, tmp_path):
    """Acknowledgements commit to the inbox file; business writes hold the main file's lock."""
    import sqlite3

    upgrade(sqlite_url)
    path = inbox_file(sqlite_url)
    assert path and is_sqlite(sqlite_url)
    eng = sync_engine(sqlite_url)
    try:
        with eng.begin() as conn:
            conn.execute(text(
                "INSERT INTO inbox_events (dedupe_key, platform, payload, status, attempts,"
                " error, received_at) VALUES ('k1', 'wecom', '{}', 'pending', 0, '',"
                " '2026-01-01 00:00:00.000000')"))
        # a writer holding the main file's lock does not block an inbox commit
        main = sqlite3.connect(make_url_path(sqlite_url), timeout=0.1)
        main.execute("BEGIN IMMEDIATE")
        try:
            with eng.begin() as conn:
                conn.execute(text("UPDATE inbox_events SET status='done' WHERE dedupe_key='k1'"))
        finally:
            main.rollback()
            main.close()
        raw = sqlite3.connect(path)
        rows = raw.execute("SELECT dedupe_key, status FROM inbox_events").fetchall()
        assert rows == [("k1", "done")]
        raw.close()
    finally:
        eng.dispose()


def make_url_path(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database
