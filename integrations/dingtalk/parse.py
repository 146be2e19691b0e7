"""DingTalk payloads → neutral ``Event``.

Robot messages (HTTP mode, PROTOCOLS §1/§2): dedupe on ``msgId``; ``conversationType`` "1" is a
1:1 chat (chat id = the sender's staff id), "2" a group (chat id = ``conversationId``, which is
the ``openConversationId`` the group-send API wants). Media carry a ``downloadCode`` (never a
URL); audio brings DingTalk's own speech-to-text in ``content.recognition``. ``richText`` joins
its text parts and takes its first picture as the media. ``sessionWebhook`` (+ expiry) is kept
in ``reply_hint`` for completeness; replies go through the robot API and the outbox.

Card callbacks (card platform, ``callbackType: "HTTP"``) arrive inside the encrypted event
envelope with the shape the card platform pushes (``outTrackId``, ``userId``, ``corpId``,
``type: "actionCallback"``, ``content`` = a JSON *string* holding
``cardPrivateData{actionIds, params}``). ``params.action`` is our signed token.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from bot.event import CardAction, ChatRef, Event, MediaRef

log = logging.getLogger(__name__)

CARD_CALLBACK_TYPES = {"actionCallback", "card_callback", "CARD_CALLBACK"}


def _ms_to_dt(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
        return None


def _content(raw: dict[str, Any]) -> dict[str, Any]:
    content = raw.get("content")
    if isinstance(content, str):  # some pushes carry it as a JSON string
        try:
            content = json.loads(content)
        except ValueError:
            content = {}
    return content if isinstance(content, dict) else {}


def parse_robot(raw: dict[str, Any], app_id: str) -> Event | None:
    """A robot message → ``Event``; None for a message type we do not handle (ack + log).

    Raises ``ValueError`` when required fields are missing (answer 400)."""
    if not isinstance(raw, dict):
        raise ValueError("robot payload is not an object")
    msg_id = str(raw.get("msgId") or "")
    msgtype = str(raw.get("msgtype") or "")
    sender = str(raw.get("senderStaffId") or raw.get("senderId") or "")
    if not msg_id or not msgtype or not sender:
        raise ValueError("robot payload lacks msgId/msgtype/sender")
    conv_type = str(raw.get("conversationType") or "1")
    if conv_type == "2":
        cid = str(raw.get("conversationId") or "")
        if not cid:
            raise ValueError("group message without conversationId")
        chat = ChatRef(id=cid, type="group", title=str(raw.get("conversationTitle") or ""))
    else:
        chat = ChatRef(id=sender, type="p2p")
    content = _content(raw)
    text = ""
    media: MediaRef | None = None
    msg_type: str
    if msgtype == "text":
        msg_type = "text"
        body = raw.get("text")
        text = str(body.get("content") or "") if isinstance(body, dict) else ""
        text = text.strip()
    elif msgtype == "picture":
        msg_type = "image"
        code = str(content.get("downloadCode") or content.get("pictureDownloadCode") or "")
        if not code:
            raise ValueError("picture without downloadCode")
        media = MediaRef(kind="image", key=code, message_id=msg_id,
                         extra=_extra(content, "pictureDownloadCode"))
    elif msgtype == "audio":
        msg_type = "voice"
        code = str(content.get("downloadCode") or "")
        if not code:
            raise ValueError("audio without downloadCode")
        recognition = content.get("recognition")
        media = MediaRef(kind="voice", key=code, message_id=msg_id,
                         duration_ms=_int(content.get("duration")),
                         recognition=str(recognition) if recognition else None)
    elif msgtype in ("file", "video"):
        msg_type = msgtype
        code = str(content.get("downloadCode") or "")
        if not code:
            raise ValueError(f"{msgtype} without downloadCode")
        media = MediaRef(kind=msgtype, key=code, message_id=msg_id,  # type: ignore[arg-type]
                         duration_ms=_int(content.get("duration")),
                         extra=_extra(content, "fileName", "fileType", "videoType"))
    elif msgtype == "richText":
        msg_type = "rich_text"
        parts = content.get("richText")
        if not isinstance(parts, list):
            raise ValueError("richText without parts")
        texts: list[str] = []
        for part in parts:
            if not isinstance(part, dict):
                continue
            if part.get("text"):
                texts.append(str(part["text"]))
            code = part.get("downloadCode") or part.get("pictureDownloadCode")
            if media is None and code and part.get("type", "picture") == "picture":
                media = MediaRef(kind="image", key=str(code), message_id=msg_id,
                                 extra=_extra(part, "pictureDownloadCode"))
        text = "\n".join(t.strip() for t in texts if t.strip())
    else:
        log.info("dingtalk robot: unhandled msgtype %r acknowledged", msgtype[:40])
        return None
    hint: dict[str, Any] = {}
    if raw.get("sessionWebhook"):
        hint["session_webhook"] = str(raw["sessionWebhook"])
        expires = _int(raw.get("sessionWebhookExpiredTime"))
        if expires is not None:
            hint["expires_at"] = expires
    kwargs: dict[str, Any] = {}
    created = _ms_to_dt(raw.get("createAt"))
    if created is not None:
        kwargs["created_at"] = created
    return Event(platform="dingtalk", app_id=app_id, event_id=msg_id, kind="message",
                 msg_type=msg_type, sender=sender, sender_name=str(raw.get("senderNick") or ""),
                 chat=chat, text=text, media=media, message_id=msg_id, reply_hint=hint,
                 raw=_slim(raw), **kwargs)


def _extra(src: dict[str, Any], *names: str) -> dict[str, Any]:
    return {n: src[n] for n in names if src.get(n)}


def _slim(raw: dict[str, Any]) -> dict[str, Any]:
    """What we keep of the raw payload: no session webhook URL (it is a bearer capability)."""
    return {k: v for k, v in raw.items() if k not in ("sessionWebhook",)}


def is_card_callback(data: dict[str, Any]) -> bool:
    return bool(data.get("outTrackId")) and (
        data.get("type") in CARD_CALLBACK_TYPES or "content" in data)


def parse_card_callback(data: dict[str, Any], app_id: str) -> Event:
    """A card-platform callback → ``Event(kind="card_action")``.

    Dedupe key: ``EventId`` if present, else ``outTrackId + actionIds + userId`` (+ a hash of
    the params, so two different inputs on one card are two taps). Raises ``ValueError``."""
    out_track_id = str(data.get("outTrackId") or "")
    user = str(data.get("userId") or data.get("staffId") or "")
    if not out_track_id or not user:
        raise ValueError("card callback lacks outTrackId/userId")
    content = _content(data)
    private = content.get("cardPrivateData") or {}
    if not isinstance(private, dict):
        raise ValueError("cardPrivateData is not an object")
    action_ids = private.get("actionIds") or []
    params = private.get("params") or {}
    if not isinstance(action_ids, list) or not isinstance(params, dict):
        raise ValueError("bad cardPrivateData")
    token = params.get("action")
    form = {k: v for k, v in params.items() if k != "action"}
    event_id = str(data.get("EventId") or data.get("eventId") or "")
    if not event_id:
        digest = hashlib.sha256(json.dumps(params, sort_keys=True, ensure_ascii=False)
                                .encode()).hexdigest()[:16]
        event_id = f"card:{out_track_id}:{','.join(map(str, action_ids))}:{user}:{digest}"
    cid = str(data.get("openConversationId") or data.get("spaceId") or "")
    group = str(data.get("spaceType") or "").upper() == "IM_GROUP" and cid
    chat = ChatRef(id=cid, type="group") if group else ChatRef(id=user, type="p2p")
    return Event(platform="dingtalk", app_id=app_id, event_id=event_id[:255],
                 kind="card_action", msg_type="card_action", sender=user, chat=chat,
                 action=CardAction(value=str(token) if isinstance(token, str) else "",
                                   form=form, card_ref={"out_track_id": out_track_id}),
                 raw={k: v for k, v in data.items() if k != "content"})


__all__ = ["is_card_callback", "parse_card_callback", "parse_robot"]
