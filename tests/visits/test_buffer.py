"""The chat buffer on SQLite and PostgreSQL: record (idempotent), read back, fill in text,
purge after the window; and the setting that sets the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from config import load_settings
from storage import chat_buffer
from storage.db import async_engine
from storage.migrate import upgrade

NOW = datetime(2024, 5, 15, 8, 0, tzinfo=UTC)


async def test_record_read_purge(db_url):
    upgrade(db_url)
    engine = async_engine(db_url)
    try:
        async with AsyncSession(engine) as s:
            for n, age_days in enumerate([10, 8, 6.9, 1, 0], 1):
                await chat_buffer.record(
                    s, platform="wecom", app_id="corp1", chat_id="grp1",
                    message_id=f"m{n}", sender=f"u{n}", sender_name="张三",
                    text=f"第{n}条", sent_at=NOW - timedelta(days=age_days))
            # a redelivered message (same platform message id) is not stored twice
            await chat_buffer.record(s, platform="wecom", app_id="corp1", chat_id="grp1",
                                     message_id="m5", sender="u5", text="again", sent_at=NOW)
            await chat_buffer.record(s, platform="feishu", app_id="cli1", chat_id="grp1",
                                     message_id="m5", sender="ou_1", text="other platform",
                                     sent_at=NOW)
            await s.commit()

        async with AsyncSession(engine) as s:
            rows = await chat_buffer.recent(s, platform="wecom", app_id="corp1",
                                            chat_id="grp1", since=NOW - timedelta(days=7))
            assert [r.message_id for r in rows] == ["m5", "m4", "m3"]  # newest first
            assert rows[0].text == "第5条" and rows[0].sent_at.tzinfo is not None
            rows = await chat_buffer.recent(s, platform="wecom", app_id="corp1",
                                            chat_id="grp1", since=NOW - timedelta(days=7),
                                            exclude_message_id="m5", limit=1)
            assert [r.message_id for r in rows] == ["m4"]
            assert await chat_buffer.set_text(s, platform="wecom", app_id="corp1",
                                              message_id="m4", text="转写：华东精密")
            assert not await chat_buffer.set_text(s, platform="wecom", app_id="corp1",
                                                  message_id="nope", text="x")
            await s.commit()

        async with AsyncSession(engine) as s:
            assert await chat_buffer.purge_chat_buffer(s, NOW, days=7) == 2
            await s.commit()
            left = await chat_buffer.recent(s, platform="wecom", app_id="corp1",
                                            chat_id="grp1", since=NOW - timedelta(days=365))
            assert [r.message_id for r in left] == ["m5", "m4", "m3"]
            assert left[1].text == "转写：华东精密"
            ids = [left[2].id, 999_999, left[0].id]
            assert [r.message_id for r in await chat_buffer.by_ids(s, ids)] == ["m3", "m5"]
            assert await chat_buffer.purge_chat_buffer(s, NOW, days=0) == 2  # older than now
            await s.commit()
    finally:
        await engine.dispose()


def test_window_setting(monkeypatch):
    assert load_settings(database_url="sqlite://").chat_buffer_days == 7
    monkeypatch.setenv("FIELDBOT_CHAT_BUFFER_DAYS", "3")
    assert load_settings(database_url="sqlite://").chat_buffer_days == 3


async def test_group_chats_the_bot_hears_are_remembered_once(db_url):
    """An admin binds a team to a chat the bot has seen: every group message keeps a chats
    row (first title wins; a second message or a redelivery adds nothing)."""
    from sqlalchemy import text

    upgrade(db_url)
    engine = async_engine(db_url)
    try:
        async with AsyncSession(engine) as s:
            for title in ("华东销售群", "renamed", ""):
                await chat_buffer.remember_chat(s, platform="feishu", app_id="cli1",
                                                external_id="oc_1", title=title)
            await chat_buffer.remember_chat(s, platform="wecom", app_id="corp1",
                                            external_id="oc_1", title="企业微信群")
            await s.commit()
        async with AsyncSession(engine) as s:
            rows = (await s.execute(text("SELECT platform, external_id, type, title FROM chats "
                                         "ORDER BY platform"))).all()
        assert [tuple(r) for r in rows] == [("feishu", "oc_1", "group", "华东销售群"),
                                           ("wecom", "oc_1", "group", "企业微信群")]
    finally:
        await engine.dispose()
