"""Fake ``wss://openws.work.weixin.qq.com``: the WeCom AI bot's long connection, wire-accurate.

Frames are the official SDK's (``WecomTeam/aibot-node-sdk`` ``src/ws.ts``): JSON
``{cmd?, headers:{req_id}, body?}``; answers to the bot's commands are
``{headers:{req_id}, errcode, errmsg}``.

- ``aibot_subscribe {bot_id, secret}``: a wrong pair answers errcode **853000** and closes.
  **One live connection per bot**: a new subscribe sends ``disconnected_event`` to the old
  connection and closes it (``kicks`` counts them).
- ``ping`` is answered (unless ``stall_pings``); ``aibot_respond_msg`` /
  ``aibot_respond_welcome_msg`` / ``aibot_respond_update_msg`` are valid only on a req_id this
  server pushed **on that connection**, the update only on a ``template_card_event`` within
  ``update_ttl_s`` (5 s) and the welcome only on ``enter_chat``; otherwise errcode
  ``REQ_ID_GONE`` ([?] WeCom publishes no code for it; the bot falls back on any errcode ≠ 0).
  ``aibot_send_msg`` needs a ``chatid`` and a markdown/template_card/media body (else 40008,
  WeCom's "invalid message type"). Every command is recorded (``Recorder``, platform
  ``wecom_aibot``, api = the cmd, ``result = {req_id, errcode}``) and acked.
- Pushes: ``push_text`` / ``push_image`` / ``push_file`` / ``push_voice`` / ``push_mixed`` /
  ``push_event`` / ``push_tap`` build ``aibot_msg_callback`` / ``aibot_event_callback`` bodies;
  media bytes are AES-256-CBC encrypted with a fresh per-message ``aeskey`` and served at
  ``GET /aibot/media/{id}`` (``media_ttl_s``, 5 minutes).
- Fault switches: ``ack_delay_s`` (acks come late: ``timeline`` shows the bot waits for one
  before sending the next frame on the same req_id), ``duplicate_push`` (the next N pushes
  are re-pushed with the same msgid), ``stall_pings`` (pings unanswered, nothing else sent),
  ``drop()`` (the server closes the connection without a word).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from simulator.core import Call, Recorder

PLATFORM = "wecom_aibot"
WS_PATH = "/aibot/ws"
MEDIA_PATH = "/aibot/media"
BAD_CREDENTIALS = 853000
INVALID_MSGTYPE = 40008
REQ_ID_GONE = 846605  # [?] placeholder: the real code for an expired/unknown req_id is unpublished
RESPOND_CMDS = ("aibot_respond_msg", "aibot_respond_welcome_msg", "aibot_respond_update_msg")
SEND_TYPES = ("markdown", "template_card", "file", "image", "voice", "video")


def _aeskey() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _encrypt(data: bytes, aeskey: str) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = base64.b64decode(aeskey)
    pad = 32 - len(data) % 32  # PKCS#7 to 32-byte blocks, as WeCom does
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return enc.update(data + bytes([pad]) * pad) + enc.finalize()


@dataclass
class Conn:
    ws: web.WebSocketResponse
    origin: str
    bot_id: str = ""
    pushed: dict[str, dict] = field(default_factory=dict)  # req_id -> what was pushed


class WeComAibotSim:
    def __init__(self, recorder: Recorder, bot_id: str, secret: str,
                 reply_ttl_s: float = 360.0, update_ttl_s: float = 5.0,
                 media_ttl_s: float = 300.0):
        self.recorder = recorder
        self.bot_id = bot_id
        self.secret = secret
        self.reply_ttl_s = reply_ttl_s
        self.update_ttl_s = update_ttl_s
        self.media_ttl_s = media_ttl_s
        self.live: dict[str, Conn] = {}
        self.subscribes: list[dict] = []  # {bot_id, errcode}
        self.kicks = 0
        self.pings = 0
        self.stall_pings = False
        self.duplicate_push = 0
        self.media: dict[str, tuple[bytes, float]] = {}  # id -> (ciphertext, expiry)
        self.req_chats: dict[str, str] = {}  # pushed req_id -> its chat (userid or chatid)
        self.ack_delay_s = 0.0  # fault: acks to the bot's commands come this late
        self.timeline: list[tuple[str, str]] = []  # ("recv"|"ack", req_id) in order
        self._tasks: set[asyncio.Task] = set()
        self._seq = itertools.count(1)
        self._connected = asyncio.Event()

    # == routes ============================================================================
    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(WS_PATH, self.ws_handler)
        app.router.add_get(MEDIA_PATH + "/{mid}", self.media_get)

    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = Conn(ws, f"{request.scheme}://{request.host}")
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    continue  # the real server ignores garbage
                if isinstance(frame, dict):
                    await self._on_frame(conn, frame)
        finally:
            if conn.bot_id and self.live.get(conn.bot_id) is conn:
                del self.live[conn.bot_id]
                self._connected.clear()
        return ws

    async def media_get(self, request: web.Request) -> web.Response:
        item = self.media.get(request.match_info["mid"])
        if item is None or time.monotonic() > item[1]:
            return web.Response(status=404, text="expired")
        return web.Response(body=item[0], content_type="application/octet-stream")

    # == the bot's frames ======================================================================
    async def _ack(self, conn: Conn, req_id: str, code: int = 0, errmsg: str = "ok",
                   body: dict | None = None) -> None:
        frame: dict[str, Any] = {"headers": {"req_id": req_id}, "errcode": code,
                                 "errmsg": errmsg}
        if body is not None:
            frame["body"] = body
        if not conn.ws.closed:
            await conn.ws.send_str(json.dumps(frame))

    async def _on_frame(self, conn: Conn, frame: dict) -> None:
        cmd = str(frame.get("cmd") or "")
        headers = frame.get("headers") if isinstance(frame.get("headers"), dict) else {}
        req_id = str(headers.get("req_id") or "")
        body = frame.get("body") if isinstance(frame.get("body"), dict) else {}
        if cmd == "aibot_subscribe":
            await self._subscribe(conn, req_id, body)
            return
        if not conn.bot_id:  # nothing works before a successful subscribe
            await self._ack(conn, req_id, BAD_CREDENTIALS, "not subscribed")
            await conn.ws.close()
            return
        if cmd == "ping":
            self.pings += 1
            if not self.stall_pings:
                await self._ack(conn, req_id)
            return
        code, errmsg = self._check(conn, cmd, req_id, body)
        self.recorder.add(Call(PLATFORM, cmd, WS_PATH, body, dest=str(body.get("chatid") or ""),
                               result={"req_id": req_id, "errcode": code}))
        self.timeline.append(("recv", req_id))
        if self.ack_delay_s:
            task = asyncio.ensure_future(self._late_ack(conn, req_id, code, errmsg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            await self._ack(conn, req_id, code, errmsg)
            self.timeline.append(("ack", req_id))

    async def _late_ack(self, conn: Conn, req_id: str, code: int, errmsg: str) -> None:
        await asyncio.sleep(self.ack_delay_s)
        self.timeline.append(("ack", req_id))
        await self._ack(conn, req_id, code, errmsg)

    async def _subscribe(self, conn: Conn, req_id: str, body: dict) -> None:
        ok = body.get("bot_id") == self.bot_id and body.get("secret") == self.secret
        self.subscribes.append({"bot_id": str(body.get("bot_id") or ""),
                                "errcode": 0 if ok else BAD_CREDENTIALS})
        if not ok:
            await self._ack(conn, req_id, BAD_CREDENTIALS, "invalid bot_id or secret")
            await conn.ws.close()
            return
        old = self.live.get(self.bot_id)
        conn.bot_id = self.bot_id
        self.live[self.bot_id] = conn
        await self._ack(conn, req_id)
        self._connected.set()
        if old is not None and not old.ws.closed:
            self.kicks += 1
            await self._send(old, "aibot_event_callback",
                             self._body("", "event", {"event": {
                                 "eventtype": "disconnected_event"}}))
            await old.ws.close()

    def _check(self, conn: Conn, cmd: str, req_id: str, body: dict) -> tuple[int, str]:
        if cmd == "aibot_send_msg":
            if not body.get("chatid"):
                return 40008, "chatid missing"
            if body.get("msgtype") not in SEND_TYPES:
                return INVALID_MSGTYPE, "invalid message type"
            return 0, "ok"
        if cmd in RESPOND_CMDS:
            pushed = conn.pushed.get(req_id)
            if pushed is None:
                return REQ_ID_GONE, "req_id not found on this connection"
            age = time.monotonic() - pushed["at"]
            if cmd == "aibot_respond_update_msg":
                if pushed["event"] != "template_card_event" or age > self.update_ttl_s:
                    return REQ_ID_GONE, "update_template_card: req_id expired"
                if body.get("response_type") != "update_template_card":
                    return INVALID_MSGTYPE, "response_type must be update_template_card"
                return 0, "ok"
            if cmd == "aibot_respond_welcome_msg" and (pushed["event"] != "enter_chat"
                                                       or age > 5.0):
                return REQ_ID_GONE, "welcome: req_id expired"
            if age > self.reply_ttl_s:
                return REQ_ID_GONE, "req_id expired"
            if body.get("msgtype") not in ("stream", "template_card", "markdown", "text",
                                           "stream_with_template_card", "image", "file",
                                           "voice", "video"):
                return INVALID_MSGTYPE, "invalid message type"
            return 0, "ok"
        return 0, "ok"  # uploads etc.: accepted, recorded

    # == pushes ================================================================================
    @property
    def connected(self) -> bool:
        conn = self.live.get(self.bot_id)
        return conn is not None and not conn.ws.closed

    async def wait_connected(self, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not self.connected:
                self._connected.clear()
                await self._connected.wait()

    def _body(self, user: str, msgtype: str, extra: dict, chat: str | None = None) -> dict:
        body: dict[str, Any] = {"msgid": f"aibotmsg{next(self._seq)}{secrets.token_hex(6)}",
                                "aibotid": self.bot_id,
                                "chattype": "group" if chat else "single",
                                "from": {"userid": user}, "create_time": int(time.time()),
                                "msgtype": msgtype, **extra}
        if chat:
            body["chatid"] = chat
        return body

    async def _send(self, conn: Conn, cmd: str, body: dict) -> str:
        req_id = secrets.token_hex(12)
        event = (body.get("event") or {}).get("eventtype", "") if cmd.endswith("event_callback") \
            else ""
        conn.pushed[req_id] = {"at": time.monotonic(), "msgid": body.get("msgid"),
                               "event": event, "chat": str(body.get("chatid") or (
                                   body.get("from") or {}).get("userid") or "")}
        self.req_chats[req_id] = conn.pushed[req_id]["chat"]
        await conn.ws.send_str(json.dumps({"cmd": cmd, "headers": {"req_id": req_id},
                                           "body": body}, ensure_ascii=False))
        return req_id

    async def push(self, cmd: str, body: dict) -> str:
        """Push one callback to the live connection; its req_id (a duplicate push, when
        switched on, goes out right after with the same msgid and a new req_id)."""
        conn = self.live.get(self.bot_id)
        if conn is None or conn.ws.closed:
            raise RuntimeError("wecom_aibot sim: the bot is not connected")
        try:
            req_id = await self._send(conn, cmd, body)
        except ConnectionError as e:  # the peer died and the transport is closing
            if self.live.get(self.bot_id) is conn:
                self.live.pop(self.bot_id)
            raise RuntimeError("wecom_aibot sim: the bot's connection is gone") from e
        if self.duplicate_push > 0:
            self.duplicate_push -= 1
            await self._send(conn, cmd, body)
        return req_id

    def add_media(self, data: bytes) -> dict:
        """Encrypt ``data`` with a fresh aeskey and serve it: the ``{url, aeskey}`` pair."""
        conn = self.live.get(self.bot_id)
        origin = conn.origin if conn else "http://127.0.0.1"
        aeskey = _aeskey()
        mid = secrets.token_hex(10)
        self.media[mid] = (_encrypt(data, aeskey), time.monotonic() + self.media_ttl_s)
        return {"url": f"{origin}{MEDIA_PATH}/{mid}", "aeskey": aeskey}

    async def push_text(self, user: str, text: str, chat: str | None = None,
                        bot_name: str = "FieldBot") -> str:
        content = f"@{bot_name} {text}" if chat else text
        return await self.push("aibot_msg_callback",
                               self._body(user, "text", {"text": {"content": content}}, chat))

    async def push_image(self, user: str, data: bytes, chat: str | None = None) -> str:
        return await self.push("aibot_msg_callback",
                               self._body(user, "image", {"image": self.add_media(data)}, chat))

    async def push_file(self, user: str, data: bytes) -> str:
        return await self.push("aibot_msg_callback",
                               self._body(user, "file", {"file": self.add_media(data)}))

    async def push_voice(self, user: str, transcript: str) -> str:
        """Voice as WeCom sends it to an AI bot: its own transcript, no audio."""
        return await self.push("aibot_msg_callback",
                               self._body(user, "voice", {"voice": {"content": transcript}}))

    async def push_mixed(self, user: str, text: str, image: bytes,
                         chat: str | None = None) -> str:
        items = [{"msgtype": "text", "text": {"content": text}},
                 {"msgtype": "image", "image": self.add_media(image)}]
        return await self.push("aibot_msg_callback",
                               self._body(user, "mixed", {"mixed": {"msg_item": items}}, chat))

    async def push_event(self, user: str, eventtype: str, chat: str | None = None,
                         **fields: Any) -> str:
        return await self.push("aibot_event_callback",
                               self._body(user, "event", {"event": {"eventtype": eventtype,
                                                                    **fields}}, chat))

    async def push_tap(self, user: str, event_key: str, task_id: str,
                       card_type: str = "button_interaction", chat: str | None = None) -> str:
        tap = {"card_type": card_type, "event_key": event_key, "task_id": task_id}
        return await self.push_event(user, "template_card_event", chat,
                                     template_card_event=tap)

    async def drop(self) -> None:
        """Fault: the server closes the bot's connection without a word."""
        conn = self.live.pop(self.bot_id, None)
        if conn is not None:
            await conn.ws.close()

    # == what the bot did ======================================================================
    def frames(self, cmd: str | None = None) -> list[Call]:
        return self.recorder.of(PLATFORM, cmd)

    def ok(self, cmd: str | None = None) -> list[Call]:
        return [c for c in self.frames(cmd) if c.result and c.result["errcode"] == 0]

    def chat_of(self, call: Call) -> str:
        """Where an accepted frame showed up: its chatid, or the chat of the callback whose
        req_id it answered."""
        return call.dest or self.req_chats.get(call.result["req_id"], "")

    def shown(self, chat: str) -> list[Call]:
        """Everything the bot put in ``chat`` (in order; updates included)."""
        return [c for c in self.ok() if c.api != "ping" and self.chat_of(c) == chat]
