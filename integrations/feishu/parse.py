"""Decrypted Feishu callbacks → neutral ``Event``.

v2 events carry ``schema: "2.0"`` and a ``header`` (event_id, event_type, token); v1 events a
top-level ``uuid``, ``token`` and ``event.type``. ``envelope`` pulls out what the webhook needs
before parsing (kind, token, event id); ``to_event`` returns ``None`` for kinds we do not handle
(acknowledged and logged by the webhook).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from bot.event import CardAction, ChatRef, Event, Location, MediaRef

PLATFORM = "feishu"

MSG_TYPES = {"text": "text", "image": "image", "audio": "voice", "file": "file",
             "post": "rich_text", "merge_forward": "merge_forward", "media": "video",
             "location": "location"}


class ParseError(ValueError):
    """Structurally wrong payload: answer 400."""


@dataclass
class Envelope:
    version: str  # "v2" | "v1" | "challenge"
    type: str  # url_verification | im.message.receive_v1 | card.action.trigger | …
    token: Any
    event_id: str
    challenge: str = ""


def envelope(data: Any) -> Envelope:
    if not isinstance(data, dict):
        raise ParseError("payload is not an object")
    if data.get("type") == "url_verification":
        challenge = data.get("challenge")
        if not isinstance(challenge, str):
            raise ParseError("url_verification without challenge")
        return Envelope("challenge", "url_verification", data.get("token"), "", challenge)
    header = data.get("header")
    if data.get("schema") or isinstance(header, dict):
        if not isinstance(header, dict):
            raise ParseError("v2 event without header")
        event_id = header.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            raise ParseError("v2 event without event_id")
        return Envelope("v2", str(header.get("event_type") or ""), header.get("token"), event_id)
    event = data.get("event")
    kind = event.get("type") if isinstance(event, dict) else data.get("type")
    event_id = data.get("uuid")
    if not isinstance(event_id, str) or not event_id:
        event_id = uuid.uuid4().hex  # v1 without uuid: nothing to dedupe on
    return Envelope("v1", str(kind or ""), data.get("token"), event_id)


def _obj(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise ParseError(f"{what} is not an object")
    return value


def _content(raw: Any) -> dict:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def strip_mentions(text: str, mentions: Any) -> str:
    """``"@_user_1 help"`` → ``"help"``: drop the placeholder keys Feishu puts in the text."""
    keys = [m.get("key") for m in mentions or [] if isinstance(m, dict)]
    for key in sorted((k for k in keys if isinstance(k, str) and k), key=len, reverse=True):
        text = text.replace(key, " ")
    text = re.sub(r"@_user_\d+|@_all", " ", text)
    return re.sub(r"[ \t]+", " ", text).strip()


def _post_parts(content: dict) -> tuple[str, str | None]:
    """Text and first image key of a ``post`` (rich text), with or without a locale wrapper."""
    body = content
    if "content" not in body:
        for value in content.values():
            if isinstance(value, dict) and "content" in value:
                body = value
                break
    lines: list[str] = []
    image: str | None = None
    if body.get("title"):
        lines.append(str(body["title"]))
    for para in body.get("content") or []:
        words = []
        for el in para if isinstance(para, list) else []:
            if not isinstance(el, dict):
                continue
            if el.get("tag") in ("text", "a", "md") and el.get("text"):
                words.append(str(el["text"]))
            elif el.get("tag") == "img" and image is None:
                image = el.get("image_key")
        if words:
            lines.append("".join(words))
    return "\n".join(lines), image


def _location(content: dict) -> Location | None:
    """``{"name": "…", "longitude": "121.47", "latitude": "31.23"}`` (strings; GCJ-02, as the
    client's map gives it); None when the numbers are missing or out of range."""
    try:
        lat, lon = float(content.get("latitude")), float(content.get("longitude"))
    except (TypeError, ValueError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):  # NaN fails too
        return None
    return Location(lat=lat, lon=lon, label=str(content.get("name") or "")[:200])


def to_event(data: dict, app_id: str) -> Event | None:
    env = envelope(data)
    if env.version == "v2" and env.type == "im.message.receive_v1":
        return _message_v2(data, app_id, env.event_id)
    if env.version == "v2" and env.type == "card.action.trigger":
        return _card_action(data, app_id, env.event_id)
    if env.version == "v1" and env.type == "message":
        return _message_v1(data, app_id, env.event_id)
    return None


def _message_v2(data: dict, app_id: str, event_id: str) -> Event:
    event = _obj(data.get("event"), "event")
    msg = _obj(event.get("message"), "event.message")
    sender = _obj(event.get("sender"), "event.sender")
    sender_id = sender.get("sender_id") if isinstance(sender.get("sender_id"), dict) else {}
    open_id = str(sender_id.get("open_id") or "")
    ftype = str(msg.get("message_type") or "")
    chat_type = "group" if msg.get("chat_type") == "group" else "p2p"
    message_id = str(msg.get("message_id") or "")
    content = _content(msg.get("content"))
    ev = Event(platform=PLATFORM, app_id=app_id, event_id=event_id, kind="message",
               msg_type=MSG_TYPES.get(ftype, ftype or "unknown"), sender=open_id,
               chat=ChatRef(id=str(msg.get("chat_id") or ""), type=chat_type),
               message_id=message_id, raw=_raw(data))
    if ftype == "text":
        ev.text = strip_mentions(str(content.get("text") or ""), msg.get("mentions"))
    elif ftype == "image" and content.get("image_key"):
        ev.media = MediaRef(kind="image", key=str(content["image_key"]), message_id=message_id)
    elif ftype == "audio" and content.get("file_key"):
        ev.media = MediaRef(kind="voice", key=str(content["file_key"]), message_id=message_id,
                            duration_ms=_int(content.get("duration")))
    elif ftype == "file" and content.get("file_key"):
        ev.media = MediaRef(kind="file", key=str(content["file_key"]), message_id=message_id,
                            extra={"file_name": str(content.get("file_name") or "")})
    elif ftype == "media" and content.get("file_key"):
        ev.media = MediaRef(kind="video", key=str(content["file_key"]), message_id=message_id,
                            duration_ms=_int(content.get("duration")))
    elif ftype == "post":
        text, image = _post_parts(content)
        ev.text = strip_mentions(text, msg.get("mentions"))
        if image:
            ev.media = MediaRef(kind="image", key=str(image), message_id=message_id)
    elif ftype == "location":
        ev.location = _location(content)
    elif ftype == "merge_forward":
        ev.text = "[merge_forward]"  # children need GET /im/v1/messages/{id}; see PROTOCOLS §2
    return ev


def _message_v1(data: dict, app_id: str, event_id: str) -> Event:
    event = _obj(data.get("event"), "event")
    chat_type = "group" if event.get("chat_type") == "group" else "p2p"
    ftype = str(event.get("msg_type") or "text")
    text = str(event.get("text_without_at_bot") or event.get("text") or "")
    return Event(platform=PLATFORM, app_id=app_id, event_id=event_id, kind="message",
                 msg_type=MSG_TYPES.get(ftype, ftype), sender=str(event.get("open_id") or ""),
                 chat=ChatRef(id=str(event.get("open_chat_id") or ""), type=chat_type),
                 text=strip_mentions(text, []) if ftype == "text" else "",
                 message_id=str(event.get("open_message_id") or ""), raw=_raw(data))


def action_token(value: Any) -> str:
    """Our buttons carry ``{"t": token}``; accept a bare string too."""
    if isinstance(value, dict):
        value = value.get("t", "")
    return value if isinstance(value, str) else ""


def _card_action(data: dict, app_id: str, event_id: str) -> Event:
    event = _obj(data.get("event"), "event")
    operator = event.get("operator") if isinstance(event.get("operator"), dict) else {}
    action = event.get("action") if isinstance(event.get("action"), dict) else {}
    context = event.get("context") if isinstance(event.get("context"), dict) else {}
    form = dict(action.get("form_value") or {}) if isinstance(action.get("form_value"),
                                                             dict) else {}
    name = action.get("name")
    if isinstance(name, str) and name:  # a lone input outside a form (select, checker, input)
        for key in ("option", "checked", "input_value"):
            if key in action:
                form.setdefault(name, action[key])
    open_message_id = str(context.get("open_message_id") or "")
    chat_id = str(context.get("open_chat_id") or "")
    return Event(platform=PLATFORM, app_id=app_id, event_id=event_id, kind="card_action",
                 msg_type="card_action", sender=str(operator.get("open_id") or ""),
                 chat=ChatRef(id=chat_id, type="p2p"), message_id=open_message_id,
                 action=CardAction(value=action_token(action.get("value")), form=form,
                                   card_ref={"token": str(event.get("token") or ""),
                                             "open_message_id": open_message_id}),
                 reply_hint={"chat_id": chat_id} if chat_id else {}, raw=_raw(data))


def _raw(data: dict) -> dict:
    """The payload as stored in the inbox, minus the verification token (a secret)."""
    out = {k: v for k, v in data.items() if k != "token"}
    if isinstance(out.get("header"), dict):
        out["header"] = {k: v for k, v in out["header"].items() if k != "token"}
    return out


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
        return None
