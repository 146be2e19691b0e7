"""DingTalk Stream mode: robot messages and card taps over an outbound WebSocket (PROTOCOLS §9.1).

One session: ``POST {api}/v1.0/gateway/connections/open`` with the app's key and secret and
the subscriptions → ``{endpoint, ticket}`` (90 s, single use) → WebSocket
``endpoint?ticket=…`` → JSON frames ``{specVersion, type, headers:{topic, messageId, …},
data:"<JSON>"}``. Every frame is acknowledged ``{code, headers:{messageId, contentType},
message, data}`` — a robot message or a card tap only after ``Ingress.submit`` returned, i.e.
after its inbox row is committed (an unacknowledged EVENT is re-pushed; the inbox dedupes on
msgId / the tap's key). SYSTEM ``ping`` is echoed; SYSTEM ``disconnect`` means: open a new
ticket and reconnect (``Reconnect``). A 401 ``authFailed`` from the open call ends the loop
(``AuthFailed``): a wrong secret is reported once, not retried every second.

The robot message's ``data`` is the HTTP-mode robot JSON and a card callback's is the
card-platform callback, so ``integrations.dingtalk.parse`` applies unchanged. WebSocket pings
every ``ping_interval`` (aiohttp's heartbeat closes the socket when the pong is late) and the
base class's watchdog replace a connection that went quiet.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.inbox import InboxUnavailable
from integrations.dingtalk.parse import is_card_callback, parse_card_callback, parse_robot
from integrations.longconn import AuthFailed, LongConnection, Reconnect

log = logging.getLogger(__name__)

OPEN_PATH = "/v1.0/gateway/connections/open"
ROBOT_TOPIC = "/v1.0/im/bot/messages/get"
CARD_TOPIC = "/v1.0/card/instances/callback"
PING_S = 60.0
OPEN_TIMEOUT_S = 10.0
UA = "fieldbot/1.0 (aiohttp)"


def _local_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def ack(message_id: str, data: Any, code: int = 200, message: str = "OK") -> str:
    return json.dumps({"code": code, "headers": {"messageId": message_id,
                                                 "contentType": "application/json"},
                       "message": message, "data": json.dumps(data, ensure_ascii=False)},
                      ensure_ascii=False)


class DingTalkStream(LongConnection):
    transport = "dingtalk-stream"

    def __init__(self, ingress, api_base: str, client_id: str, client_secret: str,
                 topics: tuple[str, ...] = (ROBOT_TOPIC, CARD_TOPIC),
                 ping_interval: float = PING_S, **kw):
        super().__init__(ping_interval=ping_interval, **kw)
        self.ingress = ingress
        self.api_base = api_base.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self.topics = topics
        self.http: aiohttp.ClientSession | None = None
        self.acked = 0
        self._disconnect_asked = False

    # -- the open call ------------------------------------------------------------------------
    async def open(self) -> str:
        """A fresh ticket → the WebSocket URL. Raises AuthFailed on refused credentials."""
        assert self.http is not None, "DingTalkStream needs start(http) first"
        subs = [{"type": "EVENT", "topic": "*"}]
        subs += [{"type": "CALLBACK", "topic": t} for t in self.topics]
        body = {"clientId": self.client_id, "clientSecret": self._secret,
                "subscriptions": subs, "ua": UA, "localIp": _local_ip()}
        async with self.http.post(self.api_base + OPEN_PATH, json=body,
                                  timeout=aiohttp.ClientTimeout(total=OPEN_TIMEOUT_S)) as resp:
            raw = await resp.read()
            status = resp.status
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        code = str(answer.get("code") or "")
        if status in (401, 403) or code in ("authFailed", "InvalidAuthentication"):
            raise AuthFailed(f"gateway open refused the app key/secret: HTTP {status}"
                             f" {code or '-'} {str(answer.get('message') or '')[:80]}".strip())
        if status != 200:
            raise ConnectionError(f"gateway open: HTTP {status} {code or '-'}")
        endpoint, ticket = answer.get("endpoint"), answer.get("ticket")
        if not (isinstance(endpoint, str) and isinstance(ticket, str) and endpoint and ticket):
            raise ConnectionError("gateway open: no endpoint/ticket in the answer")
        return f"{endpoint}?ticket={quote(ticket, safe='')}"

    # -- one connection ---------------------------------------------------------------------
    async def session(self) -> None:
        url = await self.open()
        assert self.http is not None
        self._disconnect_asked = False
        async with self.http.ws_connect(url, heartbeat=self.ping_interval,
                                        max_msg_size=4 * 1024 * 1024, autoping=False) as ws:
            self.connected(ws)
            watchdog = asyncio.create_task(self.watchdog(ws), name="dingtalk-watchdog")
            try:
                async for msg in self.messages(ws):
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        await self.on_frame(ws, msg.data)
                    if self._disconnect_asked:
                        break
            finally:
                watchdog.cancel()
        if self._disconnect_asked:
            raise Reconnect("disconnect frame")
        self.last_error = self.why_closed(ws)

    async def on_frame(self, ws, text: str) -> None:
        try:
            frame = json.loads(text)
            headers = frame.get("headers") or {}
            kind = str(frame.get("type") or "")
            topic = str(headers.get("topic") or "")
            message_id = str(headers.get("messageId") or "")
        except (ValueError, AttributeError, TypeError, RecursionError):  # deep nesting
            log.warning("dingtalk stream: unreadable frame (%d bytes) ignored", len(text))
            return
        if kind == "SYSTEM":
            if topic == "ping":
                await self.send(ws, ack(message_id, _data(frame)))
            elif topic == "disconnect":
                # what was committed stays committed; frames still on their way to the inbox
                # lose only their ack (an EVENT is then pushed again)
                log.info("dingtalk stream: server asked to reconnect")
                self._disconnect_asked = True
            else:
                log.info("dingtalk stream: SYSTEM topic %r ignored", topic[:60])
            return
        if kind == "EVENT":
            # events are chosen in the console; we handle none of them yet: acknowledged
            await self.send(ws, ack(message_id, {"status": "SUCCESS", "message": "ignored"}))
            return
        if kind == "CALLBACK":
            await self.spawn(self.on_callback(ws, topic, message_id, frame))
            return
        log.info("dingtalk stream: frame type %r ignored", kind[:30])

    async def on_callback(self, ws, topic: str, message_id: str, frame: dict) -> None:
        data = _data(frame)
        try:
            if topic == CARD_TOPIC or (isinstance(data, dict) and is_card_callback(data)):
                event = parse_card_callback(data, self.client_id)
            elif topic == ROBOT_TOPIC:
                event = parse_robot(data, self.client_id)
            else:
                log.info("dingtalk stream: callback topic %r acknowledged", topic[:60])
                await self.send(ws, ack(message_id, {"response": None}))
                return
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("dingtalk stream: malformed %s callback: %s", topic[:60],
                        exc.__class__.__name__)
            await self.send(ws, ack(message_id, {"response": None}, code=400,
                                    message="bad request"))
            return
        if event is not None:
            try:
                new, _toast = await self.ingress.submit(event, toast_wait=0)
            except InboxUnavailable:
                log.error("dingtalk stream: inbox unavailable; %s not acknowledged", message_id)
                return  # no ack: DingTalk pushes it again
            if not new:
                log.info("dingtalk stream: duplicate %s acknowledged", event.event_id[:80])
        if await self.send(ws, ack(message_id, {"response": None})):
            self.acked += 1


def _data(frame: dict) -> Any:
    raw = frame.get("data")
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw else {}
        except (ValueError, RecursionError):  # RecursionError: nested past json's limit
            return raw
    return raw if raw is not None else {}
