"""Fake Feishu: the open API the bot calls, and wire-accurate callbacks into the bot.

API (all recorded in the ``Recorder`` as platform "feishu"): tenant token, send message (5 QPS
per receive_id → HTTP 429 code 99991400 like the real gateway; ``uuid`` dedupe for 1 h), card
delayed update (token usable twice, 30 min), message PATCH, message resource download.
Web sign-in (H5): ``app_access_token/internal``, ``authen/v1/oidc/access_token`` (a code
minted by ``issue_web_code``, single use, 5 minutes; else code 20007 like Feishu) and
``authen/v1/user_info`` with the user token.
Recorder api names: ``token``, ``oauth`` (a code exchanged or a user_info read), ``send`` (a
real delivery), ``send_dup`` (uuid replay, no delivery), ``update_card``, ``patch``,
``media``, ``rejected`` (any refused call).

Callbacks are encrypted the way Feishu does it (AES-256-CBC, key = SHA256(encrypt_key), random
IV prepended, base64) — the encryption is built from lark-oapi's ``AESCipher`` key derivation
and every blob is round-tripped through ``AESCipher.decrypt`` — and signed with
``X-Lark-Signature = sha256_hex(ts + nonce + encrypt_key + body)``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from Crypto.Cipher import AES
from Crypto.Util.Padding import pad
from lark_oapi.core.utils import AESCipher

from simulator.core import Call, Faults, Recorder, SlidingLimit
from simulator.feishu_ws import FeishuWsSim

PLATFORM = "feishu"
UUID_TTL_S = 3600
CARD_TOKEN_TTL_S = 1800
WEB_CODE_TTL_S = 300  # H5 sign-in codes live 5 minutes and work once


def encrypt(encrypt_key: str, plaintext: str, iv: bytes | None = None) -> str:
    """Feishu's event encryption, checked against lark-oapi's decryptor."""
    cipher = AESCipher(encrypt_key)
    iv = iv or os.urandom(16)
    blob = iv + AES.new(cipher.digest, AES.MODE_CBC, iv).encrypt(pad(plaintext.encode(), 16))
    out = base64.b64encode(blob).decode()
    assert cipher.decrypt_str(out) == plaintext
    return out


def sign(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


PATCH_DAYS = 14  # a sent card can be PATCHed for this long
CARD_MAX = 30 * 1024  # a card's JSON; past it the message is refused (230025) and lost


@dataclass
class Reply:
    status: int
    data: Any
    elapsed: float = 0.0


@dataclass
class Message:
    message_id: str
    receive_id: str
    receive_id_type: str
    msg_type: str
    content: Any
    uuid: str = ""
    updates: list = field(default_factory=list)
    sent_at: float = 0.0  # the fake's clock: PATCH works for 14 days only
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))  # as answered


class FeishuSim:
    def __init__(self, recorder: Recorder, app_id: str, app_secret: str,
                 verification_token: str, encrypt_key: str, qps: int = 5,
                 clock=time.monotonic):
        self.recorder = recorder
        self.app_id = app_id
        self.app_secret = app_secret
        self.verification_token = verification_token
        self.encrypt_key = encrypt_key
        self.clock = clock
        self.limit = SlidingLimit(qps, 1.0, clock=clock)
        self.faults = Faults()
        self.token_expire_s = 7200
        self.tokens: dict[str, float] = {}  # issued tenant token -> expiry
        self.messages: dict[str, Message] = {}
        self._uuids: dict[str, tuple[float, str]] = {}
        self.card_tokens: dict[str, list] = {}  # token -> [uses_left, expires_at, message_id]
        self.unanswered: set[str] = set()  # tap tokens whose answer has not come back yet
        self.media: dict[tuple[str, str], bytes] = {}
        self._n = 0
        self.app_tokens: dict[str, float] = {}  # issued app_access_token -> expiry
        self.web_codes: dict[str, dict] = {}  # H5 code -> {"user", "expires", "used"}
        self.user_tokens: dict[str, tuple[str, float]] = {}  # u-token -> (open_id, expiry)
        self.ws = FeishuWsSim(app_id, app_secret, payloads=self)  # 长连接 (issue 14)

    # -- set-up -------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._token)
        app.router.add_post("/open-apis/im/v1/messages", self._send)
        app.router.add_patch("/open-apis/im/v1/messages/{mid}", self._patch)
        app.router.add_get("/open-apis/im/v1/messages/{mid}/resources/{key}", self._resource)
        app.router.add_post("/open-apis/interactive/v1/card/update", self._card_update)
        app.router.add_post("/open-apis/auth/v3/app_access_token/internal", self._app_token)
        app.router.add_post("/open-apis/authen/v1/oidc/access_token", self._oidc_token)
        app.router.add_get("/open-apis/authen/v1/user_info", self._user_info)
        self.ws.add_routes(app)

    def add_media(self, message_id: str, key: str, data: bytes) -> None:
        self.media[(message_id, key)] = data

    def delivered(self, receive_id: str | None = None) -> list[Message]:
        return [m for m in self.messages.values()
                if receive_id is None or m.receive_id == receive_id]

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n:06d}{uuid.uuid4().hex[:10]}"

    # -- API ----------------------------------------------------------------------------
    def _reject(self, api: str, request: web.Request, body: Any, status: int, code: int,
                msg: str, headers: dict | None = None) -> web.Response:
        data = {"code": code, "msg": msg}
        self.recorder.add(Call(PLATFORM, "rejected", request.path, body, result=data,
                               dest=api))
        return web.json_response(data, status=status, headers=headers)

    def _auth(self, request: web.Request, api: str, body: Any) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        if self.faults.take("token_invalid"):
            self.tokens.pop(token, None)
            return self._reject(api, request, body, 400, 99991663,
                                "Invalid access token for authorization.")
        if not auth.startswith("Bearer ") or self.tokens.get(token, 0) < self.clock():
            return self._reject(api, request, body, 400, 99991663,
                                "Invalid access token for authorization.")
        return None

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
            return self._reject("token", request, {"app_id": body.get("app_id")}, 400, 10014,
                                "app secret invalid")
        token = self._id("t")
        self.tokens[token] = self.clock() + self.token_expire_s
        self.recorder.add(Call(PLATFORM, "token", request.path, {"app_id": self.app_id},
                               result={"expire": self.token_expire_s}))
        return web.json_response({"code": 0, "msg": "ok", "tenant_access_token": token,
                                  "expire": self.token_expire_s})

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        denied = self._auth(request, "send", body)
        if denied:
            return denied
        if self.faults.take("server_error"):
            return self._reject("send", request, body, 500, 1, "internal error")
        id_type = request.query.get("receive_id_type", "")
        receive_id = body.get("receive_id", "")
        if id_type not in ("open_id", "chat_id", "user_id", "union_id", "email") \
                or not receive_id:
            return self._reject("send", request, body, 400, 230001, "invalid receive_id")
        if body.get("msg_type") not in ("text", "post", "interactive", "image", "file",
                                        "audio", "share_chat"):
            return self._reject("send", request, body, 400, 230001, "invalid msg_type")
        try:
            content = json.loads(body.get("content", ""))
        except (TypeError, ValueError):
            return self._reject("send", request, body, 400, 230001, "content is not json")
        idem = body.get("uuid") or ""
        if len(idem) > 50:
            return self._reject("send", request, body, 400, 99992402, "uuid too long")
        now = self.clock()
        if idem and idem in self._uuids and now - self._uuids[idem][0] < UUID_TTL_S:
            first = self.messages[self._uuids[idem][1]]
            self.recorder.add(Call(PLATFORM, "send_dup", request.path, body,
                                   result={"message_id": first.message_id}, dest=receive_id))
            return web.json_response({"code": 0, "msg": "success",
                                      "data": self._msg_data(first)})
        if self.faults.take("rate_limited"):  # the app-wide limit
            return self._reject("send", request, body, 429, 99991400,
                                "request trigger frequency limit",
                                headers={"x-ogw-ratelimit-limit": "5",
                                         "x-ogw-ratelimit-reset": "1"})
        if not self.limit.allow(receive_id):  # 5 QPS per receiver (PROTOCOLS §9.4)
            return self._reject("send", request, body, 400, 230020,
                                "This message is trigger rate limit.")
        if body["msg_type"] == "interactive" and len(body["content"].encode()) > CARD_MAX:
            return self._reject("send", request, body, 400, 230025,
                                "The length of the message content reaches its limit.")
        msg = Message(self._id("om"), receive_id, id_type, body["msg_type"], content, idem,
                      sent_at=now)
        self.messages[msg.message_id] = msg
        if idem:
            self._uuids[idem] = (now, msg.message_id)
        self.recorder.add(Call(PLATFORM, "send", request.path, body,
                               result={"message_id": msg.message_id}, dest=receive_id))
        return web.json_response({"code": 0, "msg": "success", "data": self._msg_data(msg)})

    @staticmethod
    def _msg_data(msg: Message) -> dict:
        return {"message_id": msg.message_id, "msg_type": msg.msg_type,
                "create_time": str(msg.created_ms),
                "chat_id": msg.receive_id if msg.receive_id_type == "chat_id" else "oc_p2p",
                "body": {"content": json.dumps(msg.content, ensure_ascii=False)}}

    async def _patch(self, request: web.Request) -> web.Response:
        body = await request.json()
        denied = self._auth(request, "patch", body)
        if denied:
            return denied
        msg = self.messages.get(request.match_info["mid"])
        if msg is None or msg.msg_type != "interactive":
            return self._reject("patch", request, body, 400, 230001, "message not found")
        if self.clock() - msg.sent_at > PATCH_DAYS * 86400:
            # "仅支持修改14天内发送的消息"; the code of that refusal is not documented [?]
            return self._reject("patch", request, body, 400, 230031,
                                "The message is too old to be updated.")
        try:
            card = json.loads(body.get("content", ""))
        except (TypeError, ValueError):
            return self._reject("patch", request, body, 400, 230001, "content is not json")
        msg.content = card
        msg.updates.append(("patch", card))
        self.recorder.add(Call(PLATFORM, "patch", request.path, body,
                               result={"message_id": msg.message_id}, dest=msg.receive_id))
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    async def _card_update(self, request: web.Request) -> web.Response:
        body = await request.json()
        denied = self._auth(request, "update_card", body)
        if denied:
            return denied
        token = body.get("token", "")
        if token in self.unanswered:
            # "并行执行或提前执行会出现更新失败或更新后立即复原" (doc uMDO1YjLzgTN24yM4UjN); the
            # code of that failure is not documented [?]: recorded, refused as a bad token
            self.recorder.add(Call(PLATFORM, "update_before_answer", request.path, body))
            return self._reject("update_card", request, body, 400, 200800,
                                "token invalid or expired")
        entry = self.card_tokens.get(token)
        if entry is None or entry[0] <= 0 or entry[1] < self.clock():
            return self._reject("update_card", request, body, 400, 200800,
                                "token invalid or expired")
        if not isinstance(body.get("card"), dict):
            return self._reject("update_card", request, body, 400, 200621, "card invalid")
        entry[0] -= 1
        msg = self.messages.get(entry[2])
        if msg is not None:
            msg.content = body["card"]
            msg.updates.append(("token", body["card"]))
        self.recorder.add(Call(PLATFORM, "update_card", request.path, body,
                               result={"message_id": entry[2]}))
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    async def _resource(self, request: web.Request) -> web.Response:
        denied = self._auth(request, "media", None)
        if denied:
            return denied
        mid, key = request.match_info["mid"], request.match_info["key"]
        kind = request.query.get("type")
        data = self.media.get((mid, key))
        if kind not in ("image", "file") or data is None:
            return self._reject("media", request, {"mid": mid, "key": key}, 400, 234003,
                                "resource not found")
        self.recorder.add(Call(PLATFORM, "media", request.path, {"mid": mid, "key": key,
                                                                 "type": kind}))
        return web.Response(body=data, content_type="application/octet-stream")

    # -- web sign-in (H5) -------------------------------------------------------------------
    def issue_web_code(self, external_user_id: str, ttl_s: float = WEB_CODE_TTL_S) -> str:
        """What the H5 page gets from ``tt.requestAuthCode`` / the OAuth redirect (``open_id``
        of the user): single use, 5 minutes."""
        code = self._id("code")
        self.web_codes[code] = {"user": external_user_id, "expires": self.clock() + ttl_s,
                                "used": False}
        return code

    async def _app_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
            return self._reject("app_token", request, {"app_id": body.get("app_id")}, 400,
                                10014, "app secret invalid")
        token = self._id("a")
        self.app_tokens[token] = self.clock() + self.token_expire_s
        tenant = self._id("t")
        self.tokens[tenant] = self.clock() + self.token_expire_s
        self.recorder.add(Call(PLATFORM, "token", request.path, {"app_id": self.app_id},
                               result={"expire": self.token_expire_s, "kind": "app"}))
        return web.json_response({"code": 0, "msg": "ok", "app_access_token": token,
                                  "tenant_access_token": tenant,
                                  "expire": self.token_expire_s})

    async def _oidc_token(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._reject("oauth", request, None, 400, 20001, "invalid request")
        auth = request.headers.get("Authorization", "")
        if self.faults.take("token_invalid"):
            self.app_tokens.pop(auth.removeprefix("Bearer "), None)
        if self.app_tokens.get(auth.removeprefix("Bearer "), 0) < self.clock():
            return self._reject("oauth", request, body, 400, 99991663,
                                "Invalid access token for authorization.")
        if body.get("grant_type") != "authorization_code":
            return self._reject("oauth", request, body, 400, 20001, "invalid grant_type")
        code = str(body.get("code") or "")
        entry = self.web_codes.get(code)
        if entry is None or entry["used"] or entry["expires"] < self.clock():
            return self._reject("oauth", request, body, 400, 20007,
                                "The authorization code is invalid or has been used.")
        entry["used"] = True
        token = "u-" + uuid.uuid4().hex
        self.user_tokens[token] = (entry["user"], self.clock() + self.token_expire_s)
        data = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_expire_s,
                "refresh_token": "ur-" + uuid.uuid4().hex, "refresh_expires_in": 2592000,
                "scope": "auth:user.id:read"}
        self.recorder.add(Call(PLATFORM, "oauth", request.path, {"code": code},
                               result={"code": 0}, dest=entry["user"]))
        return web.json_response({"code": 0, "msg": "success", "data": data})

    async def _user_info(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        entry = self.user_tokens.get(token)
        if entry is None or entry[1] < self.clock():
            return self._reject("user_info", request, None, 400, 99991668,
                                "Invalid access token for authorization.")
        open_id = entry[0]
        self.recorder.add(Call(PLATFORM, "oauth", request.path, {}, result={"code": 0},
                               dest=open_id))
        return web.json_response({"code": 0, "msg": "success", "data": {
            "open_id": open_id, "union_id": "on_" + open_id.removeprefix("ou_"),
            "user_id": open_id.removeprefix("ou_"), "name": "", "en_name": "",
            "tenant_key": "sim_tenant"}})

    # -- callbacks into the bot -------------------------------------------------------------
    def issue_card_token(self, token: str, open_message_id: str) -> None:
        self.card_tokens[token] = [2, self.clock() + CARD_TOKEN_TTL_S, open_message_id]

    def build_request(self, payload: Any, *, encrypted: bool = True, signed: bool = True,
                      timestamp: int | None = None, nonce: str | None = None,
                      forge: bool = False, raw_body: bytes | None = None
                      ) -> tuple[bytes, dict[str, str]]:
        """Body and headers exactly as Feishu would POST them (or deliberately broken)."""
        if raw_body is not None:
            body = raw_body
        else:
            plain = json.dumps(payload, ensure_ascii=False)
            body = json.dumps({"encrypt": encrypt(self.encrypt_key, plain)} if encrypted
                              else payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if signed:
            ts = str(int(time.time()) if timestamp is None else timestamp)
            nonce = nonce or uuid.uuid4().hex[:16]
            sig = sign(ts, nonce, self.encrypt_key, body)
            if forge:
                sig = sign(ts, nonce, "not-the-key", body)
            headers.update({"X-Lark-Request-Timestamp": ts, "X-Lark-Request-Nonce": nonce,
                            "X-Lark-Signature": sig})
        return body, headers

    @staticmethod
    async def post(bot_url: str, body: bytes, headers: dict[str, str]) -> Reply:
        start = time.monotonic()
        async with aiohttp.ClientSession() as s, s.post(bot_url, data=body,
                                                        headers=headers) as resp:
            raw = await resp.read()
            try:
                data = json.loads(raw)
            except ValueError:
                data = raw.decode(errors="replace")
            return Reply(resp.status, data, time.monotonic() - start)

    def _header(self, event_type: str, event_id: str | None) -> dict:
        return {"event_id": event_id or uuid.uuid4().hex, "token": self.verification_token,
                "create_time": str(int(time.time() * 1000)), "event_type": event_type,
                "tenant_key": "tenant_sim", "app_id": self.app_id}

    def message_payload(self, open_id: str, message_type: str, content: dict,
                        chat_id: str | None = None, chat_type: str = "p2p",
                        event_id: str | None = None, mentions: list | None = None,
                        message_id: str | None = None) -> dict:
        msg = {"message_id": message_id or self._id("om"), "root_id": "", "parent_id": "",
               "create_time": str(int(time.time() * 1000)),
               "chat_id": chat_id or f"oc_p2p_{open_id}", "chat_type": chat_type,
               "message_type": message_type,
               "content": json.dumps(content, ensure_ascii=False)}
        if mentions:
            msg["mentions"] = mentions
        return {"schema": "2.0", "header": self._header("im.message.receive_v1", event_id),
                "event": {"sender": {"sender_id": {"open_id": open_id, "union_id": f"on_{open_id}",
                                                   "user_id": ""},
                                     "sender_type": "user", "tenant_key": "tenant_sim"},
                          "message": msg}}

    def message_callback(self, open_id: str, text: str, chat_id: str | None = None,
                         chat_type: str = "p2p", event_id: str | None = None,
                         mentions: list | None = None) -> tuple[bytes, dict[str, str]]:
        """A text message as the webhook POST (body, headers); ``ws.push_message`` sends the
        same payload over the long connection."""
        payload = self.message_payload(open_id, "text", {"text": text}, chat_id, chat_type,
                                       event_id, mentions)
        return self.build_request(payload)

    async def deliver(self, bot_url: str, payload: dict) -> Reply:
        """An event the way Feishu delivers it: over the long connection when the bot holds
        one (the ack's ``data`` as the reply: a tap's toast), else the signed webhook POST."""
        if any(not c.ws.closed for c in self.ws.conns):
            start = time.monotonic()
            ack = await self.ws.push(payload)
            if ack is None:
                return Reply(504, None, time.monotonic() - start)
            return Reply(ack.code or 502, ack.result if ack.result is not None else {},
                         time.monotonic() - start)
        return await self.post(bot_url, *self.build_request(payload))

    async def send_text(self, bot_url: str, open_id: str, text: str, chat_id: str | None = None,
                        chat_type: str = "p2p", event_id: str | None = None,
                        mentions: list | None = None) -> Reply:
        payload = self.message_payload(open_id, "text", {"text": text}, chat_id, chat_type,
                                       event_id, mentions)
        return await self.deliver(bot_url, payload)

    async def send_image(self, bot_url: str, open_id: str, image_key: str,
                         data: bytes | None = None, **kw: Any) -> Reply:
        mid = self._id("om")
        if data is not None:
            self.add_media(mid, image_key, data)
        payload = self.message_payload(open_id, "image", {"image_key": image_key},
                                       message_id=mid, **kw)
        return await self.deliver(bot_url, payload)

    async def send_location(self, bot_url: str, open_id: str, lat: float, lon: float,
                            name: str = "", **kw: Any) -> Reply:
        """A ``location`` message as the client sends it: strings, GCJ-02 from its map."""
        payload = self.message_payload(open_id, "location", {
            "name": name, "longitude": f"{lon:.6f}", "latitude": f"{lat:.6f}"}, **kw)
        return await self.deliver(bot_url, payload)

    async def send_audio(self, bot_url: str, open_id: str, file_key: str, duration_ms: int,
                         data: bytes | None = None, **kw: Any) -> Reply:
        mid = self._id("om")
        if data is not None:
            self.add_media(mid, file_key, data)
        payload = self.message_payload(open_id, "audio",
                                       {"file_key": file_key, "duration": duration_ms},
                                       message_id=mid, **kw)
        return await self.deliver(bot_url, payload)

    def tap_payload(self, open_id: str, token_value: Any, open_message_id: str,
                    card_token: str, form_value: dict | None = None,
                    chat_id: str | None = None, event_id: str | None = None) -> dict:
        action: dict[str, Any] = {"tag": "button", "name": "btn_0",
                                  "value": token_value if isinstance(token_value, dict)
                                  else {"t": token_value}}
        if form_value is not None:
            action["form_value"] = form_value
        return {"schema": "2.0", "header": self._header("card.action.trigger", event_id),
                "event": {"operator": {"tenant_key": "tenant_sim", "open_id": open_id,
                                       "union_id": f"on_{open_id}", "user_id": ""},
                          "token": card_token, "action": action, "host": "im_message",
                          "context": {"open_message_id": open_message_id,
                                      "open_chat_id": chat_id or f"oc_p2p_{open_id}"}}}

    async def tap_card(self, bot_url: str, open_id: str, token_value: Any,
                       open_message_id: str, card_token: str | None = None,
                       form_value: dict | None = None, chat_id: str | None = None) -> Reply:
        card_token = card_token or self._id("c")
        self.issue_card_token(card_token, open_message_id)
        payload = self.tap_payload(open_id, token_value, open_message_id, card_token,
                                   form_value, chat_id)
        self.unanswered.add(card_token)  # until its answer is back (see _card_update)
        try:
            return await self.deliver(bot_url, payload)
        finally:
            self.unanswered.discard(card_token)

    async def url_verification(self, bot_url: str, challenge: str | None = None,
                               token: str | None = None, encrypted: bool = True) -> Reply:
        payload = {"challenge": challenge or uuid.uuid4().hex, "type": "url_verification",
                   "token": self.verification_token if token is None else token}
        # Feishu does not sign the URL check
        return await self.post(bot_url, *self.build_request(payload, encrypted=encrypted,
                                                            signed=False))
