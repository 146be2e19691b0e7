"""Neutral events and destinations: what every platform's callback is parsed into.

Fields (documented once, for all three platforms):
- ``platform``: "wecom" | "dingtalk" | "feishu" | "wecom_aibot" (WeCom AI bot); ``app_id``: the
  corp/app (the AI bot: its bot id) the callback is for.
- ``event_id``: the platform's dedupe key (WeCom MsgId or FromUserName+CreateTime, DingTalk
  msgId / event id, Feishu header.event_id); (platform, app_id, event_id) is unique in storage.
- ``kind``: "message" (something a user sent), "card_action" (a button/form on our card),
  "system" (join/leave/menu, handled or ignored).
- ``msg_type``: for messages "text" | "voice" | "image" | "location" | "file" | "rich_text".
- ``sender``: the platform user id; ``chat``: where it happened (p2p or group).
- ``media``: what to download later (never a URL we must trust: a platform media key).
- ``action``: the card tap: signed ``value`` plus form input, and ``card_ref`` = what the
  platform needs to update that card (WeCom response_code, Feishu token, DingTalk outTrackId).
- ``reply_hint``: platform data that makes a reply possible (DingTalk sessionWebhook).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Platform = Literal["wecom", "dingtalk", "feishu", "wecom_aibot"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class MediaRef(BaseModel):
    kind: Literal["voice", "image", "file", "video"]
    key: str
    duration_ms: int | None = None
    format: str | None = None
    message_id: str | None = None
    recognition: str | None = None  # DingTalk's own speech-to-text, when present
    extra: dict[str, Any] = Field(default_factory=dict)


class Location(BaseModel):
    lat: float
    lon: float
    label: str = ""
    # WeCom's and Feishu's location messages come from the client's map: GCJ-02 in China
    system: str = "gcj02"


class CardAction(BaseModel):
    value: str = ""  # the signed action payload as the button carried it
    form: dict[str, Any] = Field(default_factory=dict)
    card_ref: dict[str, Any] = Field(default_factory=dict)


class Target(BaseModel):
    """Where a message goes; storable as JSON in the outbox."""

    platform: Platform
    app_id: str
    kind: Literal["user", "chat"]
    id: str
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """Rate-limit / ordering key of the destination."""
        return f"{self.platform}:{self.app_id}:{self.kind}:{self.id}"


class ChatRef(BaseModel):
    id: str
    type: Literal["p2p", "group"] = "p2p"
    title: str = ""


class Event(BaseModel):
    platform: Platform
    app_id: str
    event_id: str
    kind: Literal["message", "card_action", "system"] = "message"
    msg_type: str = "text"
    sender: str = ""
    sender_name: str = ""
    chat: ChatRef
    text: str = ""
    media: MediaRef | None = None
    location: Location | None = None
    action: CardAction | None = None
    message_id: str = ""
    reply_hint: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    raw: dict[str, Any] = Field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        return f"{self.platform}:{self.app_id}:{self.event_id}"

    def reply_target(self) -> Target:
        """Answer in the chat where the event happened (1:1 → the user)."""
        if self.chat.type == "group":
            return Target(platform=self.platform, app_id=self.app_id, kind="chat",
                          id=self.chat.id, extra=dict(self.reply_hint))
        return Target(platform=self.platform, app_id=self.app_id, kind="user",
                      id=self.sender, extra=dict(self.reply_hint))


class OutMessage(BaseModel):
    """One outbound message; ``card`` is a neutral card as a dict (cards.Card.model_dump)."""

    kind: Literal["text", "markdown", "card", "update_card"]
    text: str = ""
    card: dict[str, Any] | None = None
    card_ref: dict[str, Any] = Field(default_factory=dict)  # for update_card


class Toast(BaseModel):
    """A short inline answer to a card tap (Feishu toast; elsewhere it becomes a message)."""

    kind: Literal["success", "info", "warning", "error"] = "info"
    text: str
