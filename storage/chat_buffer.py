"""The chat buffer: every message the bot receives, kept per chat for one-tap sync.

Rows are written by the dispatcher in the event's own transaction (so a retried event never
stores a message twice and a rolled-back one stores nothing) and purged after
``settings.chat_buffer_days``. Sync reads a chat's recent rows newest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import select

from storage.models import Chat, ChatMessage

MAX_TEXT = 4000  # a pasted novel is cut: sync only shows and matches the start


async def record(session, *, platform: str, app_id: str, chat_id: str, message_id: str,
                 sender: str, sender_name: str = "", msg_type: str = "text", text: str = "",
                 sent_at: datetime) -> None:
    """Insert one buffered message in the caller's transaction; a message already buffered
    (the platform redelivered it under a new event id) is left as it is, never an error."""
    values = dict(platform=platform, app_id=app_id, chat_id=chat_id,
                  message_id=message_id[:255], sender=sender, sender_name=sender_name,
                  msg_type=msg_type, text=(text or "")[:MAX_TEXT], sent_at=sent_at)
    conn = await session.connection()
    ins = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = ins(ChatMessage).values(**values).on_conflict_do_nothing(
        index_elements=["platform", "app_id", "message_id"])
    await conn.execute(stmt)


async def remember_chat(session, *, platform: str, app_id: str, external_id: str,
                        type: str = "group", title: str = "") -> None:
    """Keep a ``chats`` row for every group the bot hears from, so an admin can bind it to a
    team (alerts to the team chat) without typing platform ids; existing rows are kept."""
    conn = await session.connection()
    ins = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = ins(Chat).values(platform=platform, app_id=app_id, external_id=external_id[:255],
                            type=type, title=(title or "")[:200], webhook_url="")
    await conn.execute(stmt.on_conflict_do_nothing(
        index_elements=["platform", "app_id", "external_id"]))


async def recent(session, *, platform: str, app_id: str, chat_id: str, since: datetime,
                 limit: int = 50, exclude_message_id: str = "") -> Sequence[ChatMessage]:
    """The chat's buffered messages since ``since``, newest first."""
    q = (select(ChatMessage)
         .where(ChatMessage.platform == platform, ChatMessage.app_id == app_id,
                ChatMessage.chat_id == chat_id, ChatMessage.sent_at >= since)
         .order_by(ChatMessage.sent_at.desc(), ChatMessage.id.desc())
         .limit(limit))
    if exclude_message_id:
        q = q.where(ChatMessage.message_id != exclude_message_id)
    return await _scalars(session, q)


async def by_ids(session, ids: Sequence[int]) -> list[ChatMessage]:
    """Rows by id, in the order given (missing ones — purged — are left out)."""
    if not ids:
        return []
    rows = await _scalars(session, select(ChatMessage).where(ChatMessage.id.in_(list(ids))))
    found = {r.id: r for r in rows}
    return [found[i] for i in ids if i in found]


async def set_text(session, *, platform: str, app_id: str, message_id: str,
                   text: str) -> bool:
    """Fill in the text of a buffered voice/image message once it is transcribed or OCR'd,
    so sync and the visit evidence see it. True when the row was found."""
    rows = await _scalars(session, select(ChatMessage).where(
        ChatMessage.platform == platform, ChatMessage.app_id == app_id,
        ChatMessage.message_id == message_id))
    if not rows:
        return False
    row = rows[0]
    row.text = (text or "")[:MAX_TEXT]
    session.add(row)
    return True


async def purge_chat_buffer(session, now: datetime, days: int = 7) -> int:
    """Delete buffered messages older than ``days``; returns how many went. The caller
    commits (a scheduled job, or the admin CLI)."""
    conn = await session.connection()
    res = await conn.execute(
        delete(ChatMessage).where(ChatMessage.sent_at < now - timedelta(days=days)))
    return int(res.rowcount or 0)


async def _scalars(session, q) -> list:
    """Model rows from a SQLModel session (``exec``) or a plain SQLAlchemy one."""
    if hasattr(session, "exec"):
        return list((await session.exec(q)).all())
    return list((await session.execute(q)).scalars().all())


def purge_chat_buffer_sync(session, now: datetime, days: int = 7) -> int:
    """The same for a sync ``Session`` (worker threads, scripts)."""
    res = session.connection().execute(
        delete(ChatMessage).where(ChatMessage.sent_at < now - timedelta(days=days)))
    return int(res.rowcount or 0)
