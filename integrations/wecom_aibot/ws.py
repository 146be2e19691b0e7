"""The AI bot's WebSocket (``wss://openws.work.weixin.qq.com``) as a ``LongConnection``.

One session: ``ws_connect`` → ``aibot_subscribe {bot_id, secret}`` → its answer (errcode 0, or
853000 & co. = bad credentials → ``AuthFailed``: one error, no reconnect loop; -1 = busy →
retry with backoff) → read frames until the socket ends. Every frame is JSON
``{cmd?, headers:{req_id}, body?, errcode?, errmsg?}``:

- ``aibot_msg_callback`` / ``aibot_event_callback`` → ``on_callback(frame)`` (spawned: the
  adapter commits it to the inbox; WeCom does not want an ack for them — the answer is the
  reply, and a re-pushed msgid is deduped by the inbox);
- ``disconnected_event``: WeCom allows **one live connection per bot** and sends this to the
  old one when a new one subscribes. Reconnecting would kick the newcomer, which kicks back,
  forever (the SDK likewise stops). So the transport stops in state ``superseded`` with one
  error line; the operator (or the leader hand-over, ``storage.leader``) decides who holds it;
- frames without ``cmd`` answer our own commands, matched by ``req_id``.

Several instances (PostgreSQL): with ``leader`` set (``storage.leader.SessionLeader``), ``run``
first waits in state ``standby`` until this instance holds the lock (plus its grace time), and
drops the connection at once when the lock is lost; after a bad secret or a kick it stays the
leader without connecting, so no other instance repeats what cannot work.

Heartbeat: ``ping`` every ``ping_interval`` (30 s); its answers (and any frame) feed the base
class's watchdog, which replaces a connection silent for 3 intervals (the SDK: 2 missed pongs).

``request(cmd, req_id, body)``: answers on a callback's req_id are **serialised per req_id**
(an ack carries only the req_id, so only one may be in flight), each waiting ≤ 5 s for its ack;
errcode ≠ 0 raises ``AckError``. No frame content is ever logged (the subscribe frame carries
the secret, callbacks carry users' messages).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import aiohttp

from integrations.longconn import AuthFailed, LongConnection

log = logging.getLogger(__name__)

SUBSCRIBE = "aibot_subscribe"
PING = "ping"
CALLBACKS = ("aibot_msg_callback", "aibot_event_callback")
ACK_TIMEOUT_S = 5.0
SUBSCRIBE_TIMEOUT_S = 10.0
RETRY_CODES = {-1, 45009, 45033}  # busy / throttled: try again later, not a credentials error
DEFAULT_PING_S = 30.0


def new_req_id(prefix: str) -> str:
    """``{prefix}_{ms}_{random}``, as the official SDKs make them."""
    return f"{prefix}_{int(time.time() * 1000)}_{secrets.token_hex(4)}"


class AckError(Exception):
    """WeCom answered one of our commands with errcode ≠ 0."""

    def __init__(self, cmd: str, code: int, errmsg: str):
        super().__init__(f"{cmd}: errcode {code} {errmsg[:120]}")
        self.code = code
        self.errmsg = errmsg


class NotConnected(Exception):
    """No live socket right now (reconnecting): try again later."""


class AibotConnection(LongConnection):
    transport = "wecom_aibot"

    def __init__(self, url: str, bot_id: str, secret: str,
                 on_callback: Callable[[dict], Awaitable[None]], *,
                 ping_interval: float = DEFAULT_PING_S, ack_timeout: float = ACK_TIMEOUT_S,
                 **kwargs: Any):
        super().__init__(ping_interval=ping_interval, **kwargs)
        self.url = url
        self.bot_id = bot_id
        self._secret = secret
        self.on_callback = on_callback
        self.ack_timeout = ack_timeout
        self.http: aiohttp.ClientSession | None = None  # the adapter's, set in its start()
        self.superseded = False
        self.bad_frames = 0
        self.leader: Any = None  # storage.leader.SessionLeader when several instances share
        self._pending: dict[str, asyncio.Future] = {}
        self._req_locks: dict[str, list] = {}  # req_id -> [lock, users]

    # -- one session ------------------------------------------------------------------------
    async def session(self) -> None:
        if self.http is None:
            raise RuntimeError("wecom_aibot: adapter not started")
        ws = await self.http.ws_connect(self.url, autoping=True, heartbeat=None,
                                        timeout=aiohttp.ClientWSTimeout(
                                            ws_close=min(5.0, self.ping_interval)))
        helpers: list[asyncio.Task] = []
        try:
            await self._subscribe(ws)
            self.connected(ws)
            helpers = [asyncio.create_task(self._pinger(ws)),
                       asyncio.create_task(self.watchdog(ws))]
            await self._read(ws)
        finally:
            for task in helpers:
                task.cancel()
            if helpers:  # (asyncio.wait: our own cancellation is never swallowed here)
                await asyncio.wait(helpers)
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(NotConnected("connection closed before the ack"))
            self._pending.clear()
            with suppress(Exception):
                await ws.close()

    async def _subscribe(self, ws: Any) -> None:
        req_id = new_req_id(SUBSCRIBE)
        await ws.send_str(json.dumps({"cmd": SUBSCRIBE, "headers": {"req_id": req_id},
                                      "body": {"bot_id": self.bot_id,
                                               "secret": self._secret}}))
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
            while True:
                msg = await ws.receive()
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    raise ConnectionError(f"closed before the subscribe answer ({msg.type.name})")
                frame = self._decode(msg.data)
                if frame is None or frame.get("cmd"):
                    continue  # not the answer (a server would not push before it)
                break
        code = _errcode(frame)
        if code == 0:
            return
        errmsg = str(frame.get("errmsg") or "")[:120]
        if code in RETRY_CODES:
            raise ConnectionError(f"subscribe: errcode {code} {errmsg}")
        raise AuthFailed(f"bot {self.bot_id}: errcode {code} {errmsg} — check "
                         "FIELDBOT_WECOM_AIBOT_BOT_ID / FIELDBOT_WECOM_AIBOT_SECRET")

    async def _pinger(self, ws: Any) -> None:
        while not ws.closed:
            await asyncio.sleep(self.ping_interval)
            await self.send(ws, json.dumps({"cmd": PING,
                                            "headers": {"req_id": new_req_id(PING)}}))

    async def _read(self, ws: Any) -> None:
        async for msg in ws:
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                break
            self.seen()
            frame = self._decode(msg.data)
            if frame is None:
                continue
            cmd = frame.get("cmd")
            if cmd in CALLBACKS:
                if _is_kick(frame):
                    self._superseded()
                    return
                await self.spawn(self.on_callback(frame))
            elif not cmd:
                req_id = str((frame.get("headers") or {}).get("req_id") or "")
                fut = self._pending.get(req_id)
                if fut is not None and not fut.done():
                    fut.set_result(frame)
            else:
                log.info("wecom_aibot: unknown command %r ignored", str(cmd)[:40])

    def _decode(self, data: Any) -> dict | None:
        try:
            frame = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep JSON
            frame = None
        if not isinstance(frame, dict) or not isinstance(frame.get("headers", {}), dict):
            self.bad_frames += 1
            log.warning("wecom_aibot: unreadable frame dropped (%d so far)", self.bad_frames)
            return None
        return frame

    def _superseded(self) -> None:
        self.superseded = True
        self._stopping = True  # run() ends after this session; status says why
        self.last_error = ("another connection subscribed with this bot id (WeCom allows one"
                           " per bot): not reconnecting — stop the other instance, then"
                           " restart this one")
        log.error("wecom_aibot: bot %s: %s", self.bot_id, self.last_error)

    async def run(self) -> None:
        if self.leader is None:
            await self._run_once()
            return
        lost: asyncio.Task | None = None
        try:
            while not self._stopping:
                self.state = "standby"  # another instance holds the bot's one connection
                await self.leader.acquire()
                lost = asyncio.create_task(self.leader.watch())
                await asyncio.wait({lost}, timeout=self.leader.grace_s)  # old holder: gone
                if lost.done():
                    continue
                inner = asyncio.create_task(self._run_once())
                try:
                    await asyncio.wait({inner, lost}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (inner, lost):
                        task.cancel()
                    await asyncio.wait({inner, lost})
                if self._stopping:
                    break
                if lost.cancelled():
                    # the loop ended by itself (stopped, bad secret, superseded): stay the
                    # leader, so no other instance retries what cannot work
                    await asyncio.Event().wait()
                self.last_error = "leader lock lost: connection handed over"
                self.connected_since = None
        finally:
            if lost is not None:
                lost.cancel()
            with suppress(Exception):
                await self.leader.release()

    async def _run_once(self) -> None:
        await super().run()
        if self.superseded:
            self.state = "superseded"

    # -- our commands -------------------------------------------------------------------------
    async def request(self, cmd: str, req_id: str, body: dict) -> dict:
        """Send ``cmd`` on ``req_id`` and wait for its ack (serialised per req_id)."""
        entry = self._req_locks.setdefault(req_id, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                return await self._request(cmd, req_id, body)
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._req_locks.pop(req_id, None)

    async def _request(self, cmd: str, req_id: str, body: dict) -> dict:
        ws = self._ws
        if ws is None or ws.closed or self.state != "connected":
            raise NotConnected("wecom_aibot: not connected")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            sent = await self.send(ws, json.dumps({"cmd": cmd, "headers": {"req_id": req_id},
                                                   "body": body}, ensure_ascii=False))
            if not sent:
                raise NotConnected("wecom_aibot: connection closed")
            async with asyncio.timeout(self.ack_timeout):
                frame = await fut
        finally:
            if self._pending.get(req_id) is fut:
                del self._pending[req_id]
        code = _errcode(frame)
        if code:
            raise AckError(cmd, code, str(frame.get("errmsg") or ""))
        return frame


def _errcode(frame: dict) -> int:
    try:
        return int(frame.get("errcode") or 0)
    except (TypeError, ValueError):
        return -1


def _is_kick(frame: dict) -> bool:
    body = frame.get("body")
    event = body.get("event") if isinstance(body, dict) else None
    return isinstance(event, dict) and event.get("eventtype") == "disconnected_event"
