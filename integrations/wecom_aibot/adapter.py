"""WeCom AI bot (智能机器人) as a ``PlatformAdapter``: long connection in and out, no routes.

In: every callback frame is parsed (``parse.py``) and committed through ``Ingress.submit``
(dedupe key = msgid; a bad frame is one log line, never a dropped connection).

Out (``deliver``), using the reply context the event carried (``Target.extra`` /
``card_ref``: the callback's ``req_id`` and arrival time ``at``):

- a reply to a callback goes **in-band**, ``aibot_respond_msg`` on its req_id (text and
  markdown as one finished ``stream``, cards as ``template_card``) — once per req_id and
  within ``RESPOND_WINDOW_S``; later ones (a job's answer minutes after, a second message of
  the same handler) and an in-band answer WeCom refuses (errcode ≠ 0: the req_id is gone)
  fall back to ``aibot_send_msg`` to the chat (markdown or template_card);
- a card update after a tap is ``aibot_respond_update_msg {response_type:
  "update_template_card", template_card}`` on the tap's req_id within ``UPDATE_WINDOW_S``
  (5 s, SDK); past that the new card (or its text) is sent as a new message;
- anything proactive (alerts, an approver's card) is ``aibot_send_msg`` (chatid = the userid
  for a person, the chatid for a group).

Several instances: WeCom allows one live connection per bot (a new one kicks the old). On
PostgreSQL only the holder of the ``wecom_aibot:<bot id>`` advisory lock (``storage.leader``)
connects; the others wait in state ``standby`` and take over when it stops or dies. On SQLite
there is one instance and it always connects. A delivery on an instance without the
connection is ``NotReady``: the outbox retries it every 2 s without using up its attempts.

No ack within 5 s or no socket → ``TransientError`` (the outbox retries). Cards reuse WeCom's
``template_card`` renderer; a card without buttons is sent as text (a ``text_notice`` needs a
link).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from bot.dispatcher import Ingress
from bot.event import MediaRef, OutMessage, Target
from bot.inbox import InboxUnavailable
from bot.platform import MediaError, NotReady, PermanentError, RateLimited, TransientError
from cards import Card
from cards.render_text import render_text
from cards.render_wecom import render_card, render_update, task_id_for
from config import Settings
from integrations.wecom_aibot import media
from integrations.wecom_aibot.parse import ParseError, parse
from integrations.wecom_aibot.ws import (
    DEFAULT_PING_S,
    AckError,
    AibotConnection,
    NotConnected,
    new_req_id,
)
from storage.db import is_sqlite
from storage.leader import FileLeader, SessionLeader

log = logging.getLogger(__name__)

PER_CHAT = (20, 60.0)  # [?] no published figure for AI bots: WeCom's robot rate, to be safe
RESPOND_WINDOW_S = 5.0  # answer a callback in-band within this (PROTOCOLS §9.3: ~5 s)
UPDATE_WINDOW_S = 5.0  # update a tapped card within this (SDK: "需 5s 内调用")
STREAM_MAX_BYTES = 20480
RATE_LIMITED = {45009, 45033, 45047}
USED_REQ_IDS = 4096
LEADER_POLL_S = 2.0  # a standby instance takes over within this after the leader is gone


class Adapter:
    platform = "wecom_aibot"

    def __init__(self, settings: Settings, ingress: Ingress):
        self.settings = settings
        self.ingress = ingress
        self.app_id = settings.platform_value("wecom_aibot", "bot_id")
        self.ws_url = settings.wecom_aibot_ws_url
        self.http: Any = None
        self.transport = AibotConnection(
            self.ws_url, self.app_id, settings.platform_value("wecom_aibot", "secret"),
            self.on_callback, ping_interval=settings.longconn_ping_s or DEFAULT_PING_S)
        self._used: OrderedDict[str, None] = OrderedDict()  # req_ids answered in-band
        url = settings.resolved_database_url()
        poll = min(LEADER_POLL_S, self.transport.ping_interval)
        if not is_sqlite(url):  # several instances may share it: only the leader connects
            self.transport.leader = SessionLeader(url, f"wecom_aibot:{self.app_id}",
                                                  poll_s=poll)
        else:  # one host, maybe several worker processes: one of them connects
            self.transport.leader = FileLeader(settings.data_dir, f"wecom_aibot:{self.app_id}",
                                               poll_s=poll)

    # the connection lives where the outbox runs: its replies go in-band on that socket
    transport_role = "worker"

    def routes(self):
        return []

    async def start(self, http: Any) -> None:
        self.http = http
        self.transport.http = http

    async def close(self) -> None:
        self.http = None

    def rate_limit(self, target: Target) -> tuple[int, float]:
        return PER_CHAT

    # -- in -------------------------------------------------------------------------------
    async def on_callback(self, frame: dict) -> None:
        try:
            event = parse(frame, self.app_id)
        except (ParseError, ValueError, TypeError) as exc:
            log.warning("wecom_aibot: malformed callback dropped: %s", exc)
            return
        if event is None:
            return
        try:
            new, _toast = await self.ingress.submit(event, toast_wait=0)
        except InboxUnavailable:
            # not committed: WeCom re-pushes an unanswered msgid; nothing else we can do here
            log.error("wecom_aibot: inbox unavailable, callback %s not stored", event.event_id)
            return
        if not new:
            log.info("wecom_aibot: duplicate %s ignored", event.event_id[:80])

    async def download_media(self, ref: MediaRef, max_bytes: int) -> bytes:
        if self.http is None:
            raise MediaError("wecom_aibot: adapter not started")
        return await media.download(self.http, ref.key, str(ref.extra.get("aeskey") or ""),
                                    max_bytes, allow_http=self.ws_url.startswith("ws://"))

    # -- out ------------------------------------------------------------------------------
    async def deliver(self, target: Target, message: OutMessage, idem_key: str,
                      resend: bool = False) -> dict:
        if message.kind == "update_card":
            return await self._update(target, message, idem_key)
        respond, send, extra = self._bodies(message, idem_key)
        req_id = self._fresh(target.extra, RESPOND_WINDOW_S)
        if req_id and self._claim(req_id):
            try:
                await self._call("aibot_respond_msg", req_id, respond)
                return {"req_id": req_id, "in_band": True, **extra}
            except AckError as exc:
                log.info("wecom_aibot: in-band reply refused (%s); sending instead", exc)
        return await self._send(target, send, extra)

    def _bodies(self, message: OutMessage, idem_key: str) -> tuple[dict, dict, dict]:
        """(respond body, send body, what to return) for a text/markdown/card message."""
        if message.kind == "card":
            card = Card.model_validate(message.card or {})
            tpl = render_card(card, task_id_for(idem_key))
            if tpl.get("button_list"):
                body = {"msgtype": "template_card", "template_card": tpl}
                return body, body, {"task_id": tpl["task_id"]}
            text = render_text(card)
        else:
            text = message.text
        text = _fit_bytes(text, STREAM_MAX_BYTES)
        respond = {"msgtype": "stream",
                   "stream": {"id": task_id_for("s-" + idem_key), "finish": True,
                              "content": text}}
        return respond, {"msgtype": "markdown", "markdown": {"content": text}}, {}

    async def _update(self, target: Target, message: OutMessage, idem_key: str) -> dict:
        ref = message.card_ref
        card = Card.model_validate(message.card or {})
        task_id = str(ref.get("task_id") or "") or task_id_for(idem_key)
        if not card.card_id:
            card = card.model_copy(update={"card_id": task_id})
        tpl = render_update(card, task_id)["template_card"]
        req_id = self._fresh(ref, UPDATE_WINDOW_S)
        if req_id:
            try:
                await self._call("aibot_respond_update_msg", req_id,
                                 {"response_type": "update_template_card",
                                  "template_card": tpl})
                return {"req_id": req_id, "in_band": True, "task_id": tpl["task_id"]}
            except AckError as exc:
                log.info("wecom_aibot: card update refused (%s); sending the card instead", exc)
        if tpl.get("button_list"):
            body = {"msgtype": "template_card", "template_card": tpl}
        else:
            body = {"msgtype": "markdown", "markdown": {"content": render_text(card)}}
        return await self._send(target, body, {"task_id": tpl["task_id"]})

    async def _send(self, target: Target, body: dict, extra: dict) -> dict:
        await self._call("aibot_send_msg", new_req_id("aibot_send_msg"),
                         {"chatid": target.id, **body}, proactive=True)
        return {"in_band": False, **extra}

    async def _call(self, cmd: str, req_id: str, body: dict, proactive: bool = False) -> dict:
        try:
            return await self.transport.request(cmd, req_id, body)
        except NotConnected as exc:
            raise NotReady(f"wecom_aibot {cmd}: not connected", retry_after=2.0) from exc
        except TimeoutError as exc:
            raise TransientError(f"wecom_aibot {cmd}: no ack within "
                                 f"{self.transport.ack_timeout:.0f} s") from exc
        except AckError as exc:
            if not proactive:
                raise
            if exc.code in RATE_LIMITED:
                raise RateLimited(f"wecom_aibot {exc}", code=exc.code) from exc
            if exc.code == -1:
                raise TransientError(f"wecom_aibot {exc}", code=exc.code) from exc
            raise PermanentError(f"wecom_aibot {exc}", code=exc.code) from exc

    @staticmethod
    def _fresh(ctx: dict, window: float) -> str:
        """The callback's req_id if it is still usable for an in-band answer, else ""."""
        req_id = str(ctx.get("req_id") or "")
        try:
            at = float(ctx.get("at") or 0)
        except (TypeError, ValueError):
            return ""
        return req_id if req_id and 0 <= time.time() - at <= window else ""

    def _claim(self, req_id: str) -> bool:
        """First in-band answer on this req_id? (the rest go as messages)."""
        if req_id in self._used:
            return False
        self._used[req_id] = None
        while len(self._used) > USED_REQ_IDS:
            self._used.popitem(last=False)
        return True


def _fit_bytes(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "…"
