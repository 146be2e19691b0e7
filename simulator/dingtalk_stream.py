"""Fake DingTalk Stream gateway (PROTOCOLS §9.1), mounted by ``DingTalkSim.add_routes``.

- ``POST /v1.0/gateway/connections/open {clientId, clientSecret, subscriptions, ua, localIp}``
  → ``{endpoint, ticket}``; a wrong key/secret → HTTP 401 ``{"requestid", "code":"authFailed",
  "message":"鉴权失败"}`` (the gateway's real answer); no subscriptions → 400.
- ``GET /sim/dingtalk/stream/connect?ticket=…`` (the ``endpoint``): a ticket works once,
  within 90 s; else 401.
- ``push(topic, data)`` sends a frame to **one random** connection subscribed to the topic
  (load sharing, as DingTalk does) and waits for its ack. Robot messages are not re-pushed
  when unacknowledged (protocol FAQ); EVENTs are (``repush_after_s``), and card callbacks too
  when ``repush_callbacks`` is on (a test switch: the platform's behaviour there is [?]).
- SYSTEM ``ping`` frames every ``ping_every_s`` (if set); ``disconnect(conn)`` sends the
  SYSTEM ``disconnect`` frame and closes ~``disconnect_grace_s`` later.

Fault switches: ``stall_pongs`` (WebSocket pings go unanswered), ``drop_every`` (the server
closes a connection after every N frames it pushed on it), ``duplicate_push`` (each frame is
sent twice), ``refuse_open`` (answer the open call with a 400 systemError).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from simulator.core import Call, Recorder

OPEN_PATH = "/v1.0/gateway/connections/open"
CONNECT_PATH = "/sim/dingtalk/stream/connect"
ROBOT_TOPIC = "/v1.0/im/bot/messages/get"
CARD_TOPIC = "/v1.0/card/instances/callback"
TICKET_TTL_S = 90.0


@dataclass
class StreamConn:
    id: str
    ws: web.WebSocketResponse
    subscriptions: list[dict]
    pushed: int = 0
    acks: list[dict] = field(default_factory=list)

    def wants(self, kind: str, topic: str) -> bool:
        for sub in self.subscriptions:
            if sub.get("type") == kind and sub.get("topic") in (topic, "*"):
                return True
        return False


class StreamGateway:
    def __init__(self, recorder: Recorder, app_key: str, app_secret: str,
                 rng: random.Random | None = None):
        self.recorder = recorder
        self.app_key = app_key
        self.app_secret = app_secret
        self.rng = rng or random.Random()
        self.tickets: dict[str, tuple[float, list[dict]]] = {}
        self.conns: dict[str, StreamConn] = {}
        self.opens = 0
        self.refused_opens = 0
        self.acks: dict[str, dict] = {}  # messageId -> the ack frame
        self._waiting: dict[str, asyncio.Future] = {}
        self._ids = itertools.count(1)
        # fault switches
        self.stall_pongs = False
        self.drop_every = 0
        self.duplicate_push = False
        self.refuse_open = False
        self.repush_callbacks = False
        self.repush_after_s = 2.0
        self.disconnect_grace_s = 10.0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(OPEN_PATH, self.open)
        app.router.add_get(CONNECT_PATH, self.connect)

    # -- the open call and the socket -------------------------------------------------------
    async def open(self, request: web.Request) -> web.Response:
        self.opens += 1
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.recorder.add(Call("dingtalk", "stream_open", request.path,
                               {k: v for k, v in (body or {}).items() if k != "clientSecret"}))
        rid = str(uuid.uuid4()).upper()
        if not isinstance(body, dict):
            return web.json_response({"requestid": rid, "code": "invalidParameter",
                                      "message": "body is not JSON"}, status=400)
        if self.refuse_open:
            return web.json_response({"requestid": rid, "code": "systemError",
                                      "message": "系统错误"}, status=400)
        if body.get("clientId") != self.app_key or body.get("clientSecret") != self.app_secret:
            self.refused_opens += 1
            return web.json_response({"requestid": rid, "code": "authFailed",
                                      "message": "鉴权失败"}, status=401)
        subs = body.get("subscriptions")
        if not isinstance(subs, list) or not subs or not all(
                isinstance(s, dict) and s.get("type") in ("EVENT", "CALLBACK")
                and isinstance(s.get("topic"), str) for s in subs):
            return web.json_response({"requestid": rid, "code": "invalidParameter",
                                      "message": "subscriptions is required"}, status=400)
        ticket = str(uuid.uuid4())
        self.tickets[ticket] = (time.monotonic() + TICKET_TTL_S, subs)
        scheme = "wss" if request.secure else "ws"
        return web.json_response({"endpoint": f"{scheme}://{request.host}{CONNECT_PATH}",
                                  "ticket": ticket})

    async def connect(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        got = self.tickets.pop(ticket, None)
        if got is None or got[0] < time.monotonic():
            return web.json_response({"code": "invalidTicket", "message": "ticket is invalid"},
                                     status=401)
        ws = web.WebSocketResponse(autoping=False, max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        conn = StreamConn(id=f"conn-{next(self._ids)}", ws=ws, subscriptions=got[1])
        self.conns[conn.id] = conn
        try:
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    if not self.stall_pongs:
                        await ws.pong(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self._on_ack(conn, msg.data)
        finally:
            self.conns.pop(conn.id, None)
        return ws

    def _on_ack(self, conn: StreamConn, text: str) -> None:
        try:
            frame = json.loads(text)
            mid = str(frame["headers"]["messageId"])
            json.loads(frame["data"]) if isinstance(frame.get("data"), str) else None
        except (ValueError, KeyError, TypeError):
            self.recorder.add(Call("dingtalk", "stream_bad_ack", CONNECT_PATH, text[:200]))
            return
        conn.acks.append(frame)
        self.acks[mid] = frame
        fut = self._waiting.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(frame)

    # -- pushing ------------------------------------------------------------------------------
    def live(self, kind: str = "CALLBACK", topic: str = ROBOT_TOPIC) -> list[StreamConn]:
        return [c for c in self.conns.values() if not c.ws.closed and c.wants(kind, topic)]

    async def wait_connected(self, n: int = 1, timeout: float = 10.0,
                             topic: str = ROBOT_TOPIC) -> list[StreamConn]:
        deadline = time.monotonic() + timeout
        while len(self.live(topic=topic)) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{n} stream connection(s) not up within {timeout} s")
            await asyncio.sleep(0.02)
        return self.live(topic=topic)

    def frame(self, kind: str, topic: str, data: Any, message_id: str | None = None,
              conn: StreamConn | None = None) -> dict:
        headers = {"topic": topic, "messageId": message_id or secrets.token_hex(12),
                   "contentType": "application/json", "time": str(int(time.time() * 1000)),
                   "appId": self.app_key}
        if conn is not None:
            headers["connectionId"] = conn.id
        if kind == "EVENT":
            headers.update({"eventType": topic, "eventId": headers["messageId"],
                            "eventCorpId": "dingsimcorp",
                            "eventBornTime": headers["time"]})
        return {"specVersion": "1.0", "type": kind, "headers": headers,
                "data": data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}

    async def push(self, topic: str, data: Any, kind: str = "CALLBACK",
                   timeout: float = 5.0, message_id: str | None = None) -> dict | None:
        """Send one frame to a random subscribed connection; the ack, or None if none came
        within ``timeout`` (then re-pushed where DingTalk would)."""
        mid = message_id or secrets.token_hex(12)
        repush = kind == "EVENT" or (kind == "CALLBACK" and topic == CARD_TOPIC
                                     and self.repush_callbacks)
        deadline = time.monotonic() + timeout
        while True:
            conns = self.live(kind, topic)
            if not conns:
                if not repush or time.monotonic() > deadline:
                    return None
                await asyncio.sleep(0.05)
                continue
            conn = self.rng.choice(conns)
            fut = self._waiting.get(mid) or asyncio.get_running_loop().create_future()
            self._waiting[mid] = fut
            await self._send(conn, self.frame(kind, topic, data, mid, conn))
            wait = self.repush_after_s if repush else max(0.0, deadline - time.monotonic())
            try:
                return await asyncio.wait_for(asyncio.shield(fut), wait)
            except TimeoutError:
                if not repush or time.monotonic() > deadline:
                    self._waiting.pop(mid, None)
                    return None

    async def _send(self, conn: StreamConn, frame: dict) -> None:
        text = json.dumps(frame, ensure_ascii=False)
        try:
            await conn.ws.send_str(text)
            if self.duplicate_push:
                await conn.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            return
        conn.pushed += 1
        if self.drop_every and conn.pushed % self.drop_every == 0:
            asyncio.get_running_loop().call_soon(
                lambda: asyncio.ensure_future(conn.ws.close()))

    async def ping(self, conn: StreamConn) -> dict | None:
        """A SYSTEM ping; the ack echoes its data."""
        mid = secrets.token_hex(8)
        fut = asyncio.get_running_loop().create_future()
        self._waiting[mid] = fut
        await conn.ws.send_str(json.dumps(self.frame(
            "SYSTEM", "ping", {"opaque": mid}, mid)))
        try:
            return await asyncio.wait_for(fut, 5)
        except TimeoutError:
            return None

    async def disconnect(self, conn: StreamConn, grace_s: float | None = None) -> None:
        """SYSTEM ``disconnect`` (``connection is expired``), then close after the grace."""
        await conn.ws.send_str(json.dumps(self.frame(
            "SYSTEM", "disconnect", {"reason": "connection is expired"})))
        await asyncio.sleep(self.disconnect_grace_s if grace_s is None else grace_s)
        await conn.ws.close()

    async def close_all(self) -> None:
        for conn in list(self.conns.values()):
            await conn.ws.close()
