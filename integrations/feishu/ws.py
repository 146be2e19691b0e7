"""Feishu 长连接 (``FIELDBOT_FEISHU_MODE=ws``): events and card taps over an outbound WebSocket.

One session (PROTOCOLS §9.2): ``POST {api_base}/callback/ws/endpoint {AppID, AppSecret}`` gives
a ``URL`` (carrying ``device_id`` and ``service_id``) and a ``ClientConfig``; the socket speaks
binary ``pbbp2.Frame`` (``integrations.feishu.frames``). We send a CONTROL ``ping`` every
``PingInterval`` (the server's, unless ``longconn_ping_s`` is set); a ``pong`` may carry a new
``ClientConfig``. DATA frames of ``type`` ``event`` or ``card`` carry the plaintext event JSON
(the decrypted webhook body); ``sum > 1`` marks fragments, joined by ``message_id`` + ``seq``.

Each event goes through ``parse.to_event`` and ``Ingress.submit`` exactly like the webhook, and
is acknowledged only after its inbox row is committed (a tap's delayed card update waits for
the ack, ``answers.TapAnswers``): the frame is echoed with a ``biz_rt``
header and the payload ``{"code": 200, "headers": null, "data": base64(JSON(result))}``, where
a card tap's result is the toast the webhook would answer. Card taps are handled whether they
come as ``event`` or ``card`` frames (lark-oapi 1.7.5 drops the latter, oapi-sdk-python#126);
a ``card`` frame in the legacy card-callback shape is reshaped first (``legacy_card``).
An inbox that cannot commit answers code 500, so Feishu pushes the event again; a payload that
cannot be parsed answers 400 with one warning line.

Errors: endpoint code 1000040350 or handshake ``handshake-autherrcode`` 1000040350 → too many
connections (``ConnectionLimit``); code 1 / 1000040343 / an HTTP error → retry later; any
other endpoint code and handshake status 403 → ``AuthFailed`` (lark-oapi treats these as client
errors too: retrying does not fix the settings). The secret is never logged.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import aiohttp

from bot.inbox import InboxUnavailable
from integrations.feishu import frames, parse
from integrations.feishu.answers import TapAnswers
from integrations.longconn import AuthFailed, ConnectionLimit, LongConnection

if TYPE_CHECKING:
    from bot.dispatcher import Ingress

log = logging.getLogger(__name__)

ENDPOINT_PATH = "/callback/ws/endpoint"
DEFAULT_PING_S = 120.0  # lark-oapi's default until the server's ClientConfig arrives
MIN_SERVER_PING_S = 1.0  # a server's PingInterval below this is taken as 1 s
BUSY, INTERNAL_ERROR = 1, 1000040343
EXCEED_CONN_LIMIT = 1000040350
HS_FORBIDDEN, HS_AUTH_FAILED = 403, 514
FRAGMENT_TTL_S = 10.0  # an incomplete message is dropped (Feishu re-pushes it un-acked)
MAX_PENDING_MESSAGES = 1024
MAX_MSG_BYTES = 16 * 1024 * 1024
TOAST_WAIT_S = 0.06  # the webhook's budget (adapter passes webhook.TOAST_WAIT_S)


class FeishuWs(LongConnection):
    transport = "feishu"

    def __init__(self, *, api_base: str, app_id: str, app_secret: str, ingress: Ingress,
                 ping_s: float = 0.0, toast_wait_s: float = TOAST_WAIT_S,
                 answers: TapAnswers | None = None, **kw: Any):
        super().__init__(ping_interval=ping_s or DEFAULT_PING_S, **kw)
        self.answers = answers or TapAnswers()  # card updates wait for the tap's ack
        self.api_base = api_base.rstrip("/")
        self.app_id = app_id
        self._secret = app_secret
        self.ingress = ingress
        self.toast_wait_s = toast_wait_s
        self._fixed_ping = ping_s > 0  # the setting wins over the server's PingInterval
        self.http: aiohttp.ClientSession | None = None
        self._parts: dict[str, tuple[float, list[bytes | None]]] = {}

    # -- one session ------------------------------------------------------------------------
    async def endpoint(self) -> str:
        """The WebSocket URL for a new connection (and the server's ClientConfig)."""
        if self.http is None:
            raise RuntimeError("no HTTP session yet")
        url = self.api_base + ENDPOINT_PATH
        async with self.http.post(url, json={"AppID": self.app_id, "AppSecret": self._secret},
                                  headers={"locale": "zh"}) as resp:
            if resp.status != 200:
                raise ConnectionError(f"endpoint answered HTTP {resp.status}")
            try:
                body = await resp.json(content_type=None)
            except ValueError as exc:
                raise ConnectionError("endpoint answered non-JSON") from exc
        if not isinstance(body, dict):
            raise ConnectionError("endpoint answered non-object JSON")
        code, msg = body.get("code"), str(body.get("msg") or "")[:200]
        if code == EXCEED_CONN_LIMIT:
            raise ConnectionLimit(f"too many connections for app {self.app_id} ({code} {msg})")
        if code in (BUSY, INTERNAL_ERROR):
            raise ConnectionError(f"endpoint busy: {code} {msg}")
        if code != 0:
            raise AuthFailed(f"endpoint refused app {self.app_id}: {code} {msg}")
        data = body.get("data") or {}
        url = data.get("URL") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url:
            raise ConnectionError("endpoint answered without a URL")
        self.configure(data.get("ClientConfig"))
        return url

    def configure(self, conf: Any) -> None:
        """Apply a ``ClientConfig`` (endpoint answer or pong): the ping interval."""
        if self._fixed_ping or not isinstance(conf, dict):
            return
        ping = conf.get("PingInterval")
        if isinstance(ping, int | float) and not isinstance(ping, bool) and ping > 0:
            self.ping_interval = max(MIN_SERVER_PING_S, float(ping))

    async def session(self) -> None:
        url = await self.endpoint()
        query = parse_qs(urlparse(url).query)
        try:
            service_id = int(query.get("service_id", ["0"])[0])
        except ValueError:
            service_id = 0
        assert self.http is not None  # noqa: S101 - endpoint() checked it
        try:
            ws = await self.http.ws_connect(url, autoping=True, heartbeat=None,
                                            max_msg_size=MAX_MSG_BYTES)
        except aiohttp.WSServerHandshakeError as exc:
            raise _handshake_error(exc) from None
        self.connected(ws)
        self._parts.clear()  # fragments never span connections
        pinger = asyncio.create_task(self._ping_loop(ws, service_id))
        dog = asyncio.create_task(self.watchdog(ws))
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self.seen()
                    await self._on_frame(ws, msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    raise ConnectionError(f"socket error: {ws.exception()}")
                else:
                    log.warning("feishu: ignoring a non-binary %s message", msg.type.name)
        finally:
            pinger.cancel()
            dog.cancel()
            if not ws.closed:
                await ws.close()
        log.info("feishu: connection closed (code %s)", ws.close_code)

    async def _ping_loop(self, ws: Any, service_id: int) -> None:
        while not ws.closed:
            ping = frames.Frame(service=service_id, method=frames.CONTROL,
                                headers=[("type", "ping")])
            await self.send(ws, frames.encode(ping))
            await asyncio.sleep(self.ping_interval)

    # -- frames -----------------------------------------------------------------------------
    async def _on_frame(self, ws: Any, data: bytes) -> None:
        try:
            frame = frames.decode(data)
        except frames.FrameError as exc:
            log.warning("feishu: undecodable frame dropped (%s)", exc)
            return
        kind = frame.header("type")
        if frame.method == frames.CONTROL:
            if kind == "pong" and frame.payload:
                try:
                    self.configure(json.loads(frame.payload))
                except (ValueError, RecursionError):
                    log.warning("feishu: pong with a non-JSON ClientConfig ignored")
            return
        if frame.method != frames.DATA:
            log.warning("feishu: frame with unknown method %s dropped", frame.method)
            return
        payload = self._assemble(frame)
        if payload is None:
            return
        if kind not in ("event", "card"):
            log.info("feishu: acknowledging a %r frame we do not handle", kind)
            await self._ack(ws, frame, 200, None, time.monotonic())
            return
        await self.spawn(self._handle(ws, frame, payload, time.monotonic()))

    def _assemble(self, frame: frames.Frame) -> bytes | None:
        """The whole payload, or None while fragments are missing (or the frame is bad)."""
        try:
            total = int(frame.header("sum", "1") or 1)
            seq = int(frame.header("seq", "0") or 0)
        except ValueError:
            log.warning("feishu: frame with a bad sum/seq header dropped")
            return None
        if total <= 1:
            return frame.payload
        msg_id = frame.header("message_id")
        if not msg_id or not 0 <= seq < total or total > 4096:
            log.warning("feishu: fragment %s/%s of %r dropped", seq, total, msg_id)
            return None
        now = time.monotonic()
        for key, (born, _) in list(self._parts.items()):
            if now - born > FRAGMENT_TTL_S:
                del self._parts[key]
        born, parts = self._parts.get(msg_id, (now, [None] * total))
        if len(parts) != total:
            parts = [None] * total
        parts[seq] = frame.payload
        if any(p is None for p in parts):
            if len(self._parts) >= MAX_PENDING_MESSAGES and msg_id not in self._parts:
                log.warning("feishu: too many incomplete messages; fragment of %r dropped",
                            msg_id)
                return None
            self._parts[msg_id] = (born, parts)
            return None
        self._parts.pop(msg_id, None)
        return b"".join(p for p in parts if p is not None)

    async def _handle(self, ws: Any, frame: frames.Frame, payload: bytes, start: float) -> None:
        msg_id = frame.header("message_id")
        try:
            data = json.loads(payload)
            if frame.header("type") == "card":
                data = legacy_card(data)
            env = parse.envelope(data)
            event = parse.to_event(data, self.app_id)
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as exc:
            # ParseError, JSON and UnicodeDecodeError are ValueErrors; the rest: odd shapes
            # (RecursionError: JSON nested past json's limit)
            log.warning("feishu: malformed event in frame %s: %s", msg_id,
                        str(exc)[:200] or exc.__class__.__name__)
            await self._ack(ws, frame, 400, None, start)
            return
        if event is None:
            log.info("feishu: ignoring event type %r (%s)", env.type, env.event_id)
            await self._ack(ws, frame, 200, None, start)
            return
        card = event.kind == "card_action"
        token = ""
        if card and event.action is not None:  # its card update waits for this ack
            token = str(event.action.card_ref.get("token") or "")
            event.action.card_ref["tap_at"] = time.time()
            self.answers.expect(token)
        try:
            try:
                _new, toast = await self.ingress.submit(
                    event, toast_wait=self.toast_wait_s if card else 0.0)
            except InboxUnavailable:
                log.warning("feishu: inbox unavailable, answering 500 for %s", env.event_id)
                await self._ack(ws, frame, 500, None, start)
                return
            result: dict | None = None
            if card:
                result = {} if toast is None else {"toast": {"type": toast.kind,
                                                             "content": toast.text}}
            await self._ack(ws, frame, 200, result, start)
        finally:
            self.answers.answered(token)

    async def _ack(self, ws: Any, frame: frames.Frame, code: int, result: dict | None,
                   start: float) -> None:
        """Echo ``frame`` with ``biz_rt`` and the response (after the row is committed)."""
        frame.set_header("biz_rt", str(int((time.monotonic() - start) * 1000)))
        data = None if result is None else base64.b64encode(
            json.dumps(result, ensure_ascii=False).encode()).decode()
        frame.payload = json.dumps({"code": code, "headers": None, "data": data}).encode()
        if not await self.send(ws, frames.encode(frame)):
            log.info("feishu: connection closed before the ack of %s; Feishu will re-push",
                     frame.header("message_id"))


def legacy_card(data: Any) -> Any:
    """A ``card`` frame may carry the legacy card callback (``{open_id, open_message_id,
    token, action}``, no header) instead of ``card.action.trigger`` [?]: reshape it into the
    latter so it takes the same path. Its ``token`` (one per tap) is the dedupe key."""
    if not isinstance(data, dict) or "header" in data or "schema" in data:
        return data
    if not isinstance(data.get("action"), dict) or not data.get("token"):
        return data
    return {"schema": "2.0",
            "header": {"event_id": f"card-{data['token']}", "event_type": "card.action.trigger",
                       "tenant_key": data.get("tenant_key", ""), "app_id": data.get("app_id")},
            "event": {"operator": {"open_id": data.get("open_id", ""),
                                   "user_id": data.get("user_id", ""),
                                   "tenant_key": data.get("tenant_key", "")},
                      "token": data["token"], "action": data["action"],
                      "context": {"open_message_id": data.get("open_message_id", ""),
                                  "open_chat_id": data.get("open_chat_id", "")}}}


def _handshake_error(exc: aiohttp.WSServerHandshakeError) -> Exception:
    headers = exc.headers or {}
    status, msg = headers.get("handshake-status"), headers.get("handshake-msg", "")
    auth_code = headers.get("handshake-autherrcode", "")
    if status is None:
        return ConnectionError(f"websocket handshake failed: HTTP {exc.status}")
    if status == str(HS_AUTH_FAILED) and auth_code == str(EXCEED_CONN_LIMIT):
        return ConnectionLimit(f"too many connections ({auth_code} {msg})")
    if status == str(HS_FORBIDDEN):
        return AuthFailed(f"websocket handshake refused: {status} {msg}")
    return ConnectionError(f"websocket handshake failed: {status} {auth_code} {msg}".strip())
