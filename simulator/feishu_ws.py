"""Fake Feishu long connection (长连接): endpoint exchange, pbbp2 frames, pings, pushes, acks.

Wire (PROTOCOLS §9.2), spoken with lark-oapi's own generated ``pbbp2_pb2.Frame`` so the fake
cannot share a bug with the bot's hand-written codec:

- ``POST /callback/ws/endpoint {AppID, AppSecret}`` → ``{code: 0, data: {URL, ClientConfig}}``;
  a wrong id/secret → ``code 1000040344``; the ``URL`` (``ws://…/callback/ws/conn?device_id=
  &service_id=&ticket=``) works once.
- The WebSocket: a bad ticket → handshake refused (HTTP 403, ``handshake-status: 403``); past
  ``max_conns`` (50) open connections per app → ``handshake-status: 514`` +
  ``handshake-autherrcode: 1000040350``.
- CONTROL ``ping`` → ``pong`` carrying the ClientConfig (unless ``stall_pongs``).
- ``push`` sends an event to **one random** open connection as DATA frame(s) of ``type`` event
  (or ``card``), split in fragments (``sum``/``seq``) when ``fragment_size`` is set, and waits
  ``ack_deadline_s`` (3 s) for the ack: the same frame echoed with ``biz_rt`` and
  ``{"code", "data": base64(JSON)}``. Un-acked (or a 5xx ack) → pushed again, at most
  ``max_attempts`` times in all; what never got a 200 is in ``timed_out`` (the user would have
  seen 200340 for a card tap). A tap's delayed-update token stays in ``FeishuSim.unanswered``
  (updates refused) until its 200 ack is in, as Feishu requires.

Fault switches: ``stall_pongs``, ``drop_every_n`` (the server closes a connection after every
N-th DATA frame it sent on it, before the ack can come), ``duplicate_push`` (every event is
pushed twice, under two message ids). Event payloads come from ``FeishuSim``'s builders
(``message_payload``, ``tap_payload``), the same the webhook path posts. Records:
``endpoint_calls``, ``handshakes``, ``pings``, ``acks`` (every ack frame, valid or not),
``repushed``, ``timed_out``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from lark_oapi.ws.pb.pbbp2_pb2 import Frame

ENDPOINT = "/callback/ws/endpoint"
WS_PATH = "/callback/ws/conn"
NO_CREDENTIAL = 1000040344
EXCEED_CONN_LIMIT = 1000040350
CONTROL, DATA = 0, 1
SERVICE_ID = 33554678


@dataclass
class Conn:
    ws: web.WebSocketResponse
    device_id: str
    service_id: int
    sent: int = 0  # DATA frames pushed on it
    pings: int = 0


@dataclass
class Ack:
    message_id: str
    event_id: str
    code: int | None
    result: Any  # the decoded ``data`` (a toast for card taps), or None
    valid: bool  # echoed the frame (type, message_id, service) and carried biz_rt
    late: bool = False  # after the deadline: the platform had already given up
    problem: str = ""
    device_id: str = ""  # the connection it came on


@dataclass
class _Pending:
    event_id: str
    conn: Conn
    headers: dict[str, str]
    service: int
    token: str = ""  # a card tap's: answered once its ack is in
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop()
                                   .create_future())


def _headers(frame: Frame) -> dict[str, str]:
    return {h.key: h.value for h in frame.headers}


def _frame(method: int, service: int, headers: dict[str, str], payload: bytes = b"",
           seq_id: int = 0) -> bytes:
    f = Frame()
    f.SeqID, f.LogID, f.service, f.method = seq_id, 0, service, method
    for k, v in headers.items():
        h = f.headers.add()
        h.key, h.value = k, v
    if payload:
        f.payload = payload
    return f.SerializeToString()


def _tap_token(event: Any) -> str:
    """The delayed-update token of a card tap (``card.action.trigger`` or legacy), else ""."""
    if not isinstance(event, dict):
        return ""
    inner = event.get("event") if isinstance(event.get("event"), dict) else event
    token = inner.get("token") if isinstance(inner.get("action"), dict) else None
    return token if isinstance(token, str) else ""


class FeishuWsSim:
    """Mounted by ``FeishuSim`` (``sim.ws``); shares its app id, secret and recorder."""

    def __init__(self, app_id: str, app_secret: str, payloads: Any = None,
                 rng: random.Random | None = None):
        self.app_id = app_id
        self.payloads = payloads  # the FeishuSim whose builders make the event JSON
        self.app_secret = app_secret
        self.rng = rng or random.Random()  # noqa: S311 - load spreading, not security
        self.ping_interval_s = 120  # what ClientConfig tells clients
        self.max_conns = 50
        self.ack_deadline_s = 3.0
        self.max_attempts = 5
        self.fragment_size = 0  # > 0: payloads longer than this go in sum/seq fragments
        self.stall_pongs = False
        self.drop_every_n = 0
        self.duplicate_push = False
        self.endpoint_calls: list[dict] = []
        self.handshakes: list[dict] = []  # {"ok": bool, "status", ...}
        self.pings: list[dict] = []
        self.acks: list[Ack] = []
        self.timed_out: list[str] = []  # event ids never acked with 200
        self.repushed = 0  # attempts that got no ack in time (or a 5xx): pushed again
        self.conns: list[Conn] = []
        self._tickets: set[str] = set()
        self._pending: dict[str, _Pending] = {}
        self._seq = 0
        self._changed = asyncio.Event()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(ENDPOINT, self._endpoint)
        app.router.add_get(WS_PATH, self._ws)

    def client_config(self) -> dict:
        return {"ReconnectCount": -1, "ReconnectInterval": 120, "ReconnectNonce": 30,
                "PingInterval": self.ping_interval_s}

    # -- endpoint and handshake ---------------------------------------------------------------
    async def _endpoint(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.json_response({"code": 1000040343, "msg": "invalid request"})
        ok = body.get("AppID") == self.app_id and body.get("AppSecret") == self.app_secret
        self.endpoint_calls.append({"app_id": body.get("AppID"), "ok": ok})
        if not ok:
            return web.json_response({"code": NO_CREDENTIAL,
                                      "msg": "app_id or app_secret is invalid"})
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        url = (f"ws://{request.host}{WS_PATH}?device_id={uuid.uuid4().hex[:16]}"
               f"&service_id={SERVICE_ID}&ticket={ticket}&access_key={uuid.uuid4().hex}")
        return web.json_response({"code": 0, "msg": "ok",
                                  "data": {"URL": url, "ClientConfig": self.client_config()}})

    def _refuse(self, status: str, msg: str, auth_code: str = "") -> web.Response:
        self.handshakes.append({"ok": False, "status": status, "auth_code": auth_code})
        headers = {"handshake-status": status, "handshake-msg": msg}
        if auth_code:
            headers["handshake-autherrcode"] = auth_code
        return web.Response(status=403 if status == "403" else 514, headers=headers)

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return self._refuse("403", "invalid or used ticket")
        self._tickets.discard(ticket)
        if len(self.conns) >= self.max_conns:
            return self._refuse("514", "exceed connection limit", str(EXCEED_CONN_LIMIT))
        ws = web.WebSocketResponse(autoping=True, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        conn = Conn(ws, request.query.get("device_id", ""),
                    int(request.query.get("service_id", SERVICE_ID)))
        self.conns.append(conn)
        self.handshakes.append({"ok": True, "status": "101", "device_id": conn.device_id})
        self._notify()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await self._on_frame(conn, msg.data)
        finally:
            self.conns.remove(conn)
            for mid, p in list(self._pending.items()):
                if p.conn is conn and not p.future.done():
                    p.future.set_result(None)  # lost with the connection: push again
                    self._pending.pop(mid, None)
            self._notify()
        return ws

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- frames from the client ---------------------------------------------------------------
    async def _on_frame(self, conn: Conn, data: bytes) -> None:
        frame = Frame()
        try:
            frame.ParseFromString(data)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
            self.acks.append(Ack("", "", None, None, False, problem=f"undecodable: {exc}"))
            return
        headers = _headers(frame)
        if frame.method == CONTROL:
            if headers.get("type") == "ping":
                conn.pings += 1
                self.pings.append({"service": frame.service, "ok": frame.service ==
                                   conn.service_id})
                if not self.stall_pongs and not conn.ws.closed:
                    pong = _frame(CONTROL, frame.service, {"type": "pong"},
                                  json.dumps(self.client_config()).encode())
                    await conn.ws.send_bytes(pong)
            return
        self._on_ack(frame, headers)

    def _on_ack(self, frame: Frame, headers: dict[str, str]) -> None:
        mid = headers.get("message_id", "")
        pending = self._pending.pop(mid, None)
        problem = ""
        code, result = None, None
        try:
            body = json.loads(frame.payload)
            code = body.get("code")
            if body.get("data") is not None:
                result = json.loads(base64.b64decode(body["data"], validate=True))
        except (ValueError, TypeError, AttributeError) as exc:
            problem = f"bad ack payload: {exc}"
        if pending is None:  # after the deadline (already pushed again) or never pushed
            self.acks.append(Ack(mid, "", code, result, False, late=True,
                                 problem=problem or "no such pending frame"))
            return
        if not problem:
            if "biz_rt" not in headers:
                problem = "no biz_rt header"
            elif any(headers.get(k) != v for k, v in pending.headers.items()):
                problem = "headers not echoed"
            elif frame.service != pending.service or frame.method != DATA:
                problem = "service/method not echoed"
        ack = Ack(mid, pending.event_id, code, result, not problem, problem=problem,
                  device_id=pending.conn.device_id)
        unanswered = getattr(self.payloads, "unanswered", None)
        if pending.token and unanswered is not None and ack.valid and code == 200:
            unanswered.discard(pending.token)  # the answer is back: updates may follow
        self.acks.append(ack)
        if not pending.future.done():
            pending.future.set_result(ack)

    # -- pushing events -----------------------------------------------------------------------
    async def _connection(self, timeout: float) -> Conn | None:
        deadline = time.monotonic() + timeout
        while True:
            open_conns = [c for c in self.conns if not c.ws.closed]
            if open_conns:
                return self.rng.choice(open_conns)  # each message to one random connection
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return None

    async def _send_once(self, payload: bytes, event_id: str, kind: str,
                         token: str = "") -> Ack | None:
        conn = await self._connection(self.ack_deadline_s)
        if conn is None:
            return None
        mid = uuid.uuid4().hex
        size = self.fragment_size if 0 < self.fragment_size < len(payload) else len(payload)
        parts = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
        pending = _Pending(event_id, conn, {"type": kind, "message_id": mid},
                           conn.service_id, token)
        self._pending[mid] = pending
        try:
            for seq, part in enumerate(parts):
                self._seq += 1
                headers = {"type": kind, "message_id": mid, "sum": str(len(parts)),
                           "seq": str(seq), "trace_id": uuid.uuid4().hex}
                await conn.ws.send_bytes(_frame(DATA, conn.service_id, headers, part,
                                                self._seq))
            conn.sent += 1
            if self.drop_every_n and conn.sent % self.drop_every_n == 0:
                await conn.ws.close()  # before the ack can arrive
        except (ConnectionError, RuntimeError):
            pass
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), self.ack_deadline_s)
        except TimeoutError:
            return None
        finally:
            self._pending.pop(mid, None)

    async def push(self, event: dict | bytes | str, as_card_frame: bool = False) -> Ack | None:
        """Deliver one event (a payload dict, or raw bytes for broken input) and return the
        first 200 ack (pushing again while un-acked), or the last bad one / None."""
        if isinstance(event, dict):
            payload = json.dumps(event, ensure_ascii=False).encode()
            event_id = str((event.get("header") or {}).get("event_id") or event.get("uuid")
                           or "")
        else:
            payload = event.encode() if isinstance(event, str) else event
            event_id = ""
        kind = "card" if as_card_frame else "event"
        copies = 2 if self.duplicate_push else 1
        first: Ack | None = None
        # a tap's delayed update is refused until its answer is back (FeishuSim.unanswered)
        unanswered = getattr(self.payloads, "unanswered", None)
        token = _tap_token(event)
        if token and unanswered is not None:
            unanswered.add(token)
        try:
            for copy in range(copies):
                ack = await self._deliver(payload, event_id, kind, token)
                if copy == 0:
                    first = ack
        finally:
            if token and unanswered is not None:
                unanswered.discard(token)
        return first

    async def _deliver(self, payload: bytes, event_id: str, kind: str,
                       token: str = "") -> Ack | None:
        last: Ack | None = None
        for _ in range(self.max_attempts):
            ack = await self._send_once(payload, event_id, kind, token)
            if ack is not None:
                last = ack
                if ack.code is not None and ack.code < 500:
                    return ack  # 200, or a 4xx the client meant (no point pushing again)
            self.repushed += 1
        self.timed_out.append(event_id)
        return last

    async def wait_connected(self, n: int = 1, timeout: float = 10.0) -> list[Conn]:
        deadline = time.monotonic() + timeout
        while len(live := [c for c in self.conns if not c.ws.closed]) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{n} feishu connection(s) not up within {timeout} s")
            await asyncio.sleep(0.02)
        return live

    async def push_message(self, open_id: str, text: str, **kw: Any) -> Ack | None:
        """A text message (``FeishuSim.message_payload``) pushed; its ack if code 200."""
        payload = self.payloads.message_payload(open_id, "text", {"text": text}, **kw)
        ack = await self.push(payload)
        return ack if ack is not None and ack.code == 200 else None

    async def push_tap(self, open_id: str, token_value: Any, open_message_id: str,
                       card_token: str | None = None, as_card_frame: bool = False,
                       **kw: Any) -> Ack | None:
        """A card tap (``FeishuSim.tap_payload``, its delayed-update token issued) pushed."""
        card_token = card_token or f"c_{uuid.uuid4().hex[:16]}"
        self.payloads.issue_card_token(card_token, open_message_id)
        payload = self.payloads.tap_payload(open_id, token_value, open_message_id, card_token,
                                            **kw)
        return await self.push(payload, as_card_frame=as_card_frame)

    def ok_acks(self) -> list[Ack]:
        return [a for a in self.acks if a.valid and a.code == 200]

    async def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (broken frames) on every open connection."""
        for conn in list(self.conns):
            if not conn.ws.closed:
                await conn.ws.send_bytes(data)

    async def close_all(self) -> None:
        for conn in list(self.conns):
            await conn.ws.close()
