"""A person's own settings (where alerts reach them), stored as versioned rows of the rules
table under ``prefs:<user id>`` (the newest wins; each change keeps who made it and when)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from storage.models import ChatMessage, Identity, Setting

PLATFORMS = ("wecom", "dingtalk", "feishu", "wecom_aibot")


def key(user_id: int) -> str:
    return f"prefs:{user_id}"


async def all_prefs(session) -> dict[int, dict[str, Any]]:
    """user id → their newest preferences."""
    conn = await session.connection()
    rows = (await conn.execute(select(Setting.key, Setting.value, Setting.version)
                               .where(Setting.key.like("prefs:%"))
                               .order_by(Setting.key, Setting.version))).all()
    out: dict[int, dict[str, Any]] = {}
    for k, value, _v in rows:
        try:
            out[int(k.split(":", 1)[1])] = dict(value or {})
        except ValueError:
            continue
    return out


async def get_prefs(session, user_id: int) -> dict[str, Any]:
    """One person's newest preferences ({} when they have none)."""
    conn = await session.connection()
    row = (await conn.execute(select(Setting.value).where(Setting.key == key(user_id))
                              .order_by(Setting.version.desc()).limit(1))).first()
    return dict(row[0] or {}) if row else {}


async def set_pref(session, user_id: int, now: datetime, **values: Any) -> dict[str, Any]:
    conn = await session.connection()
    k = key(user_id)
    row = (await conn.execute(select(Setting.value, Setting.version).where(Setting.key == k)
                              .order_by(Setting.version.desc()).limit(1))).first()
    merged = {**(dict(row[0]) if row else {}), **values}
    session.add(Setting(key=k, version=(row[1] + 1) if row else 1, value=merged,
                        created_by=user_id, created_at=now))
    return merged


async def last_used(session) -> dict[tuple[str, str, str], datetime]:
    """(platform, app id, platform user id) → when that identity last wrote to the bot (from
    the chat buffer, which keeps the last days)."""
    conn = await session.connection()
    rows = (await conn.execute(
        select(ChatMessage.platform, ChatMessage.app_id, ChatMessage.sender,
               func.max(ChatMessage.sent_at))
        .join(Identity, (Identity.platform == ChatMessage.platform)
              & (Identity.app_id == ChatMessage.app_id)
              & (Identity.external_id == ChatMessage.sender))
        .group_by(ChatMessage.platform, ChatMessage.app_id, ChatMessage.sender))).all()
    return {(p, a, s): at for p, a, s, at in rows}
