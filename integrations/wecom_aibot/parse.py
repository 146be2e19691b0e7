"""``aibot_msg_callback`` / ``aibot_event_callback`` frames → neutral ``Event``.

Body fields (official Node SDK ``src/types``): ``msgid`` (the dedupe key, for messages and
events alike), ``aibotid``, ``chatid`` (groups only), ``chattype`` single|group,
``from.userid`` (the same userid as in the corp's self-built app), ``create_time``,
``msgtype`` text|image|mixed|voice|file|video|event.

- text: ``text.content``; in a group it starts with the bot's @-name, which is cut off.
- image / file / video: ``{url, aeskey}`` — the URL is valid ~5 minutes and the bytes are
  AES-256-CBC encrypted with that message's own ``aeskey`` (``MediaRef.key`` = the URL,
  ``extra.aeskey``; see ``media.py``).
- voice: WeCom sends its own transcript (``voice.content``), not the audio. It becomes a text
  event with that transcript (what the handlers do with a typed note); should a ``url`` ever
  come with it, it is a voice ``MediaRef`` with the transcript as ``recognition``.
- mixed: ``mixed.msg_item[]`` of text/image: the texts joined; with an image it is an image
  event (the text rides along).
- events: ``event.eventtype`` enter_chat (system), template_card_event (card tap: the key
  and task id either flat in ``event`` as the SDK types say, or nested in
  ``event.template_card_event`` as the HTTP-mode docs show — both are read), feedback_event
  (system). ``disconnected_event`` is a connection matter handled by ``ws.py``.

Reply context: ``reply_hint`` (→ ``Target.extra``) and a tap's ``card_ref`` carry the
callback's ``req_id`` and its arrival time ``at`` (epoch s): the adapter answers in-band on
that req_id while it is usable and proactively (``aibot_send_msg``) after.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

from bot.event import CardAction, ChatRef, Event, MediaRef
from cards.render_wecom import split_key

log = logging.getLogger(__name__)

PLATFORM = "wecom_aibot"
MSG_CALLBACK = "aibot_msg_callback"
EVENT_CALLBACK = "aibot_event_callback"
_LEADING_AT = re.compile(r"^\s*@\S+\s*")


class ParseError(ValueError):
    """The frame is not a callback we can read (logged, dropped: never crashes the socket)."""


def _created(body: dict[str, Any]) -> datetime:
    try:
        ts = int(body.get("create_time") or 0)
        return datetime.fromtimestamp(ts, UTC) if ts else datetime.now(UTC)
    except (ValueError, OverflowError, OSError, TypeError):
        return datetime.now(UTC)


def _selected(tap: dict[str, Any]) -> dict[str, Any]:
    """``selected_items.selected_item[] {question_key, option_ids.option_id[]}`` → form."""
    items = tap.get("selected_items")
    if isinstance(items, dict):
        items = items.get("selected_item")
    form: dict[str, Any] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not item.get("question_key"):
            continue
        ids = item.get("option_ids")
        if isinstance(ids, dict):
            ids = ids.get("option_id")
        ids = [str(i) for i in ids] if isinstance(ids, list) else [str(ids)] if ids else []
        form[str(item["question_key"])] = ids[0] if len(ids) == 1 else ids
    return form


def _media(kind: str, part: Any, msg_id: str) -> MediaRef | None:
    if not isinstance(part, dict) or not part.get("url"):
        return None
    return MediaRef(kind=kind, key=str(part["url"]), message_id=msg_id,  # type: ignore[arg-type]
                    extra={"aeskey": str(part.get("aeskey") or "")})


def parse(frame: dict[str, Any], bot_id: str, now: float | None = None) -> Event | None:
    """The neutral event of one callback frame, or None for a kind we do not handle."""
    cmd = frame.get("cmd")
    headers = frame.get("headers") if isinstance(frame.get("headers"), dict) else {}
    body = frame.get("body")
    req_id = str(headers.get("req_id") or "")
    if not isinstance(body, dict) or not req_id:
        raise ParseError("callback without body or req_id")
    msg_id = str(body.get("msgid") or "")
    sender = str((body.get("from") or {}).get("userid") or "") \
        if isinstance(body.get("from"), dict) else ""
    if not msg_id or not sender:
        raise ParseError("callback without msgid or from.userid")
    group = body.get("chattype") == "group" and bool(body.get("chatid"))
    chat = ChatRef(id=str(body["chatid"]), type="group") if group else ChatRef(id=sender)
    hint = {"req_id": req_id, "at": time.time() if now is None else now}
    base: dict[str, Any] = dict(platform=PLATFORM, app_id=bot_id,
                                event_id=msg_id, message_id=msg_id, sender=sender, chat=chat,
                                created_at=_created(body), reply_hint=hint,
                                raw={"cmd": cmd, "req_id": req_id, "body": body})
    if cmd == EVENT_CALLBACK:
        return _event(body, base, hint)
    if cmd != MSG_CALLBACK:
        raise ParseError(f"not a callback: {str(cmd)[:40]!r}")
    return _message(body, base, group, msg_id)


def _text(value: Any) -> str:
    return str(value.get("content") or "") if isinstance(value, dict) else ""


def _message(body: dict[str, Any], base: dict[str, Any], group: bool, msg_id: str
             ) -> Event | None:
    msg_type = str(body.get("msgtype") or "")
    strip = (lambda s: _LEADING_AT.sub("", s, count=1)) if group else (lambda s: s.strip())
    if msg_type == "text":
        return Event(kind="message", msg_type="text", text=strip(_text(body.get("text"))),
                     **base)
    if msg_type in ("image", "file", "video"):
        media = _media(msg_type, body.get(msg_type), msg_id)
        return Event(kind="message", msg_type=msg_type, media=media, **base)
    if msg_type == "voice":
        voice = body.get("voice") if isinstance(body.get("voice"), dict) else {}
        heard = str(voice.get("content") or "").strip()
        media = _media("voice", voice, msg_id)
        if media is None:
            return Event(kind="message", msg_type="text", text=heard, **base)
        media.recognition = heard or None
        media.format = str(voice.get("format") or "") or None
        return Event(kind="message", msg_type="voice", media=media, **base)
    if msg_type == "mixed":
        items = (body.get("mixed") or {}).get("msg_item") if isinstance(body.get("mixed"),
                                                                          dict) else None
        texts, media = [], None
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            if item.get("msgtype") == "text":
                texts.append(_text(item.get("text")))
            elif item.get("msgtype") == "image" and media is None:
                media = _media("image", item.get("image"), msg_id)
        text = strip(" ".join(t for t in texts if t))
        if media is not None:
            return Event(kind="message", msg_type="image", media=media, text=text, **base)
        return Event(kind="message", msg_type="text", text=text, **base)
    log.info("wecom_aibot: message type %r acknowledged, not handled", msg_type[:40])
    return None


def _event(body: dict[str, Any], base: dict[str, Any], hint: dict[str, Any]) -> Event | None:
    event = body.get("event") if isinstance(body.get("event"), dict) else {}
    name = str(event.get("eventtype") or "")
    if name == "template_card_event":
        tap = event.get("template_card_event")
        tap = tap if isinstance(tap, dict) else event
        key = str(tap.get("event_key") or "")
        token, form = split_key(key)
        form.update(_selected(tap))
        ref = {**hint, "task_id": str(tap.get("task_id") or ""),
               "card_type": str(tap.get("card_type") or "")}
        return Event(kind="card_action", msg_type="card_action",
                     action=CardAction(value=token, form=form, card_ref=ref), **base)
    if name in ("enter_chat", "feedback_event"):
        return Event(kind="system", msg_type=name, **base)
    log.info("wecom_aibot: event %r acknowledged, not handled", name[:40])
    return None


def frame_digest(frame: Any) -> str:
    """A short fingerprint of a frame for a log line (never its content: it may be private)."""
    return hashlib.sha256(repr(frame).encode()).hexdigest()[:12]
