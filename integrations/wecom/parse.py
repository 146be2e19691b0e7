"""Decrypted WeCom app callback (flat dict of the inner XML) → neutral ``Event``.

Self-built apps only receive 1:1 messages, so the chat is always p2p with the sender. Dedupe
key: ``MsgId`` for messages; ``FromUserName+CreateTime`` (plus the event name and key/task) for
events, as the docs recommend. A button's key is ``<signed token>`` or, for a select rendered as
one button per option, ``<signed token>|<name>=<value>`` (see ``cards.render_wecom``): the token
goes to ``action.value`` and is verified by the core; the suffix is form input.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from bot.event import CardAction, ChatRef, Event, Location, MediaRef
from cards.render_wecom import split_key

log = logging.getLogger(__name__)

SYSTEM_EVENTS = {"enter_agent", "subscribe", "unsubscribe", "click", "view", "location",
                 "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album",
                 "pic_weixin", "location_select", "change_contact", "batch_job_result"}


def _created(raw: dict[str, Any]) -> datetime:
    try:
        return datetime.fromtimestamp(int(raw.get("CreateTime") or 0), UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def _selected(raw: dict[str, Any]) -> dict[str, Any]:
    """SelectedItems of a dropdown (button_selection / multiple_interaction) → form.

    ``<SelectedItems><SelectedItem><QuestionKey/><OptionIds><OptionId/>…</OptionIds>
    </SelectedItem>…</SelectedItems>`` arrives as a ``[[tag, value], …]`` tree."""
    form: dict[str, Any] = {}
    items = raw.get("SelectedItems")
    if not isinstance(items, list):
        return form
    for tag, item in items:
        if tag != "SelectedItem" or not isinstance(item, list):
            continue
        qk, ids = "", []
        for sub_tag, value in item:
            if sub_tag == "QuestionKey" and isinstance(value, str):
                qk = value
            elif sub_tag == "OptionIds" and isinstance(value, list):
                ids += [v for t, v in value if t == "OptionId" and isinstance(v, str)]
            elif sub_tag == "OptionId" and isinstance(value, str):
                ids.append(value)
        if qk:
            form[qk] = ids[0] if len(ids) == 1 else ids
    return form


def parse(raw: dict[str, Any], corp_id: str) -> Event | None:
    """Return the neutral event, or None for a kind we do not handle (logged, acked)."""
    sender = str(raw.get("FromUserName") or "")
    msg_type = str(raw.get("MsgType") or "").lower()
    if not sender or not msg_type:
        raise ValueError("callback without FromUserName/MsgType")
    base: dict[str, Any] = dict(platform="wecom", app_id=corp_id, sender=sender,
                                chat=ChatRef(id=sender, type="p2p"), created_at=_created(raw),
                                raw={k: v for k, v in raw.items() if k != "Encrypt"})
    if msg_type == "event":
        return _event(raw, base)
    msg_id = str(raw.get("MsgId") or "")
    if not msg_id:
        raise ValueError("message without MsgId")
    base.update(event_id=msg_id, message_id=msg_id, kind="message")
    if msg_type == "text":
        return Event(msg_type="text", text=str(raw.get("Content") or ""), **base)
    if msg_type == "voice":
        media = MediaRef(kind="voice", key=str(raw.get("MediaId") or ""),
                         format=(str(raw.get("Format") or "amr")).lower(), message_id=msg_id)
        return Event(msg_type="voice", media=media, **base)
    if msg_type == "image":
        media = MediaRef(kind="image", key=str(raw.get("MediaId") or ""), message_id=msg_id,
                         extra={"pic_url": str(raw.get("PicUrl") or "")})
        return Event(msg_type="image", media=media, **base)
    if msg_type == "location":
        return Event(msg_type="location", location=_location(
            raw.get("Location_X"), raw.get("Location_Y"), raw.get("Label")), **base)
    if msg_type in ("video", "file", "link"):
        media = None
        if raw.get("MediaId"):
            media = MediaRef(kind="video" if msg_type == "video" else "file",
                             key=str(raw["MediaId"]), message_id=msg_id)
        return Event(msg_type=msg_type, media=media, text=str(raw.get("Title") or ""), **base)
    log.info("wecom: unknown message type %r acknowledged", msg_type)
    return None


def _event(raw: dict[str, Any], base: dict[str, Any]) -> Event | None:
    name = str(raw.get("Event") or "")
    key = str(raw.get("EventKey") or "")
    task_id = str(raw.get("TaskId") or "")
    tail = key if len(key) <= 64 else hashlib.sha256(key.encode()).hexdigest()[:32]
    event_id = f"{base['sender']}:{raw.get('CreateTime') or ''}:{name}:{tail}:{task_id[:128]}"
    if name == "template_card_event":
        token, form = split_key(key)
        form.update(_selected(raw))
        action = CardAction(value=token, form=form,
                            card_ref={"response_code": str(raw.get("ResponseCode") or ""),
                                      "task_id": task_id,
                                      "card_type": str(raw.get("CardType") or "")})
        return Event(event_id=event_id, kind="card_action", msg_type="card_action",
                     action=action, **base)
    if name.lower() in SYSTEM_EVENTS:
        ev = Event(event_id=event_id, kind="system", msg_type=name.lower(), text=key, **base)
        if name.lower() == "location" and raw.get("Latitude"):
            ev.location = _location(raw.get("Latitude"), raw.get("Longitude"), "")
        return ev
    log.info("wecom: unknown event %r acknowledged", name[:64])
    return None


def _location(lat: object, lon: object, label: object) -> Location | None:
    """A location message's position (GCJ-02, from the client's map); None when missing, not
    a number or out of range."""
    try:
        la, lo = float(str(lat)), float(str(lon))
    except ValueError:
        return None
    if not (-90 <= la <= 90 and -180 <= lo <= 180) or (la == 0 and lo == 0):
        return None
    return Location(lat=la, lon=lo, label=str(label or "")[:200])
