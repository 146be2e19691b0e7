"""Fake DingTalk: the v1.0 robot/card API the bot calls, and signed/encrypted callbacks into it.

API (``add_routes``):
- ``POST /v1.0/oauth2/accessToken {appKey, appSecret}`` → ``{accessToken, expireIn}``;
- ``POST /v1.0/robot/oToMessages/batchSend`` and ``POST /v1.0/robot/groupMessages/send``;
- ``POST /v1.0/card/instances/createAndDeliver`` and ``PUT /v1.0/card/instances``;
- ``POST /v1.0/robot/messageFiles/download`` → a ``downloadUrl`` pointing back here
  (``GET /sim/dingtalk/files/<id>.file``; bytes registered with ``add_media``);
- oapi ``POST /topapi/v2/user/getuserinfo?access_token=…`` ``{"code"}`` (H5 免登 web sign-in:
  a code minted by ``issue_web_code`` answers ``result.userid`` once, within 5 minutes; else
  errcode 40078). The oapi takes the same app token as a query parameter.

Every call needs ``x-acs-dingtalk-access-token`` (else 401 ``InvalidAuthentication``). Sends
and card deliveries answer DingTalk's real refusals (PROTOCOLS §9.4): HTTP 403
``Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`` past 20 calls/s per API, 403
``ApiCountLimitForOrg`` when ``org_quota`` (monthly metered calls) runs out, 403
``AccessTokenPermissionDenied`` with ``accessdenieddetail.requiredScopes`` while
``missing_scope`` is set. ``self.faults`` makes the next calls answer the QPS 403, 500 or 401.
Assumption [?]: a second ``createAndDeliver`` with a known ``outTrackId`` is treated as the same
card (recorded as ``send_duplicate``), not shown twice.

Callbacks: robot messages carry the real ``timestamp``/``sign`` headers; event-subscription
callbacks are encrypted and signed with dingtalk-sdk's ``DingTalkCrypto`` (owner key = appKey).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
from typing import Any

import aiohttp
from aiohttp import web
from dingtalk.crypto import DingTalkCrypto

from simulator.core import Call, Faults, Recorder, SlidingLimit
from simulator.dingtalk_stream import CARD_TOPIC, ROBOT_TOPIC, StreamGateway

PLATFORM = "dingtalk"
ROBOT_PATH = "/webhooks/dingtalk"
EVENTS_PATH = "/webhooks/dingtalk/events"
WEB_CODE_TTL_S = 300  # H5 authCodes live 5 minutes and work once
MSG_KEYS = {"sampleText", "sampleMarkdown", "sampleActionCard", "sampleLink", "sampleImageMsg"}


def robot_sign(app_secret: str, timestamp: str) -> str:
    mac = hmac.new(app_secret.encode(), f"{timestamp}\n{app_secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


class DingTalkSim:
    def __init__(self, recorder: Recorder, app_key: str, app_secret: str, robot_code: str,
                 token: str, aes_key: str, per_destination: tuple[int, float] | None = None,
                 corp_id: str = "dingsimcorp"):
        self.recorder = recorder
        self.app_key = app_key
        self.app_secret = app_secret
        self.robot_code = robot_code
        self.token = token
        self.aes_key = aes_key
        self.corp_id = corp_id
        self.crypto = DingTalkCrypto(token, aes_key, app_key)
        self.faults = Faults()
        # the app robot has no per-recipient limit (20/min is the custom webhook robot's rule);
        # it is bound by 20 calls/s per app per API and the org's monthly quota (§9.4)
        self.limit = SlidingLimit(*per_destination) if per_destination else None
        self.api_qps = SlidingLimit(20, 1.0)
        self.org_quota: int | None = None  # metered calls left this month (None: unlimited)
        self.missing_scope: str | None = None  # e.g. "qyapi_robot_sendmsg": sends answer 403
        self.tokens: dict[str, float] = {}
        self.token_ttl = 7200
        self.media: dict[str, tuple[bytes, str]] = {}
        self.files: dict[str, str] = {}  # file id in downloadUrl -> download code
        self.cards: dict[str, dict] = {}  # outTrackId -> {"dest", "params", "updates"}
        self._ids = itertools.count(1)
        self.web_codes: dict[str, dict] = {}  # H5 authCode -> {"user", "expires", "used"}
        self.stream = StreamGateway(recorder, app_key, app_secret)  # Stream mode (issue 14)

    # == fake API ==========================================================================
    def add_routes(self, app: web.Application) -> None:
        self.stream.add_routes(app)
        app.router.add_post("/v1.0/oauth2/accessToken", self.access_token)
        app.router.add_post("/v1.0/robot/oToMessages/batchSend", self.batch_send)
        app.router.add_post("/v1.0/robot/groupMessages/send", self.group_send)
        app.router.add_post("/v1.0/card/instances/createAndDeliver", self.create_card)
        app.router.add_put("/v1.0/card/instances", self.update_card)
        app.router.add_post("/v1.0/robot/messageFiles/download", self.file_download)
        app.router.add_get("/sim/dingtalk/files/{name}", self.file_get)
        app.router.add_post("/topapi/v2/user/getuserinfo", self.oauth_userinfo)

    def add_media(self, download_code: str, data: bytes,
                  content_type: str = "application/octet-stream") -> None:
        self.media[download_code] = (data, content_type)

    def sent(self, dest: str | None = None) -> list[Call]:
        """Messages and cards actually delivered (not throttled or refused)."""
        return [c for c in self.recorder.calls
                if c.platform == PLATFORM and c.api in ("send", "card")
                and isinstance(c.result, dict) and c.result.get("ok")
                and (dest is None or c.dest == dest)]

    def texts(self, dest: str | None = None) -> list[str]:
        out = []
        for c in self.sent(dest):
            if c.api == "send":
                param = json.loads(c.body.get("msgParam") or "{}")
                out.append(param.get("content") or param.get("text") or "")
        return out

    def card_calls(self) -> list[Call]:
        return [c for c in self.sent() if c.api == "card"]

    def updates(self) -> list[Call]:
        return [c for c in self.recorder.of(PLATFORM, "update_card")
                if isinstance(c.result, dict) and c.result.get("ok")]

    @staticmethod
    def _err(code: str, message: str, status: int = 400) -> web.Response:
        return web.json_response({"code": code, "message": message,
                                  "requestid": secrets.token_hex(8)}, status=status)

    def _auth(self, request: web.Request) -> web.Response | None:
        tok = request.headers.get("x-acs-dingtalk-access-token", "")
        exp = self.tokens.get(tok)
        if not tok or exp is None or exp < time.time():
            return self._err("InvalidAuthentication", "不合法的access_token", 401)
        if self.faults.take("token_invalid"):
            self.tokens.pop(tok, None)
            return self._err("InvalidAuthentication", "不合法的access_token", 401)
        return None

    async def _json(self, request: web.Request) -> dict | None:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _gate(self, dest: str, api: str = "send") -> web.Response | None:
        """Injected faults, then DingTalk's real refusals (PROTOCOLS §9.4): a missing
        permission scope, the org's monthly quota, 20 calls/s per app per API."""
        if self.faults.take("server_error"):
            return self._err("ServiceUnavailable", "system busy", 500)
        if self.missing_scope:
            resp = self._err("Forbidden.AccessDenied.AccessTokenPermissionDenied",
                             "没有调用该接口的权限", 403)
            body = json.loads(resp.text or "{}")
            body["accessdenieddetail"] = {"requiredScopes": [self.missing_scope]}
            return web.json_response(body, status=403)
        if self.org_quota is not None:
            if self.org_quota <= 0:
                return self._err("Forbidden.AccessDenied.ApiCountLimitForOrg",
                                 "企业月调用量已超限", 403)
            self.org_quota -= 1
        if self.faults.take("rate_limited") or not self.api_qps.allow(api) or (
                self.limit is not None and not self.limit.allow(dest)):
            return self._err("Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
                             "应用调用该接口的并发量超过限制", 403)
        return None

    @staticmethod
    def _finish(call: Call, resp: web.Response, ok: bool = False) -> web.Response:
        try:
            call.result = json.loads(resp.text or "{}")
        except ValueError:
            call.result = {}
        call.result["ok"] = ok
        call.result["status"] = resp.status
        return resp

    async def access_token(self, request: web.Request) -> web.Response:
        body = await self._json(request) or {}
        call = self.recorder.add(Call(PLATFORM, "token", request.path,
                                      {"appKey": body.get("appKey", "")}))
        if body.get("appKey") != self.app_key or body.get("appSecret") != self.app_secret:
            return self._finish(call, self._err("invalidClientIdOrSecret",
                                                "无效的appKey或appSecret"))
        tok = "simtok-" + secrets.token_hex(8)
        self.tokens[tok] = time.time() + self.token_ttl
        return self._finish(call, web.json_response({"accessToken": tok,
                                                     "expireIn": self.token_ttl}), ok=True)

    def _check_msg(self, body: dict | None) -> web.Response | None:
        if body is None:
            return self._err("InvalidParameter", "body is not JSON")
        if body.get("robotCode") != self.robot_code:
            return self._err("robot.notFound", "robotCode not found")
        if body.get("msgKey") not in MSG_KEYS:
            return self._err("InvalidParameter.msgKey", "unknown msgKey")
        try:
            param = json.loads(body.get("msgParam") or "")
        except (TypeError, ValueError):
            return self._err("InvalidParameter.msgParam", "msgParam must be a JSON string")
        if not isinstance(param, dict):
            return self._err("InvalidParameter.msgParam", "msgParam must be an object")
        return None

    async def batch_send(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        users = (body or {}).get("userIds") or []
        dest = str(users[0]) if isinstance(users, list) and users else ""
        call = self.recorder.add(Call(PLATFORM, "send", request.path, body, dest=dest))
        if (bad := self._auth(request)) is not None:
            return self._finish(call, bad)
        if (bad := self._check_msg(body)) is not None:
            return self._finish(call, bad)
        if not dest or len(users) > 20:
            return self._finish(call, self._err("InvalidParameter.userIds", "1..20 userIds"))
        if (bad := self._gate(dest, "batchSend")) is not None:
            return self._finish(call, bad)
        return self._finish(call, web.json_response({
            "processQueryKey": f"pqk{next(self._ids)}", "invalidStaffIdList": [],
            "flowControlledStaffIdList": []}), ok=True)

    async def group_send(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        dest = str((body or {}).get("openConversationId") or "")
        call = self.recorder.add(Call(PLATFORM, "send", request.path, body, dest=dest))
        if (bad := self._auth(request)) is not None:
            return self._finish(call, bad)
        if (bad := self._check_msg(body)) is not None:
            return self._finish(call, bad)
        if not dest:
            return self._finish(call, self._err("InvalidParameter.openConversationId",
                                                "openConversationId required"))
        if (bad := self._gate(dest, "groupSend")) is not None:
            return self._finish(call, bad)
        return self._finish(call, web.json_response(
            {"processQueryKey": f"pqk{next(self._ids)}"}), ok=True)

    @staticmethod
    def _param_map(body: dict) -> dict | None:
        data = body.get("cardData")
        params = data.get("cardParamMap") if isinstance(data, dict) else None
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            return None
        return params

    async def create_card(self, request: web.Request) -> web.Response:
        body = await self._json(request) or {}
        space = str(body.get("openSpaceId") or "")
        dest = space.rsplit(".", 1)[-1] if space.startswith("dtv1.card//IM_") else ""
        call = self.recorder.add(Call(PLATFORM, "card", request.path, body, dest=dest))
        if (bad := self._auth(request)) is not None:
            return self._finish(call, bad)
        track = str(body.get("outTrackId") or "")
        params = self._param_map(body)
        if not track or not body.get("cardTemplateId") or params is None or not dest:
            return self._finish(call, self._err("InvalidParameter", "cardTemplateId, "
                                                "outTrackId, openSpaceId and string "
                                                "cardParamMap are required"))
        group = space.startswith("dtv1.card//IM_GROUP.")
        model = body.get("imGroupOpenDeliverModel" if group else "imRobotOpenDeliverModel")
        if not isinstance(model, dict) or (group and model.get("robotCode") != self.robot_code):
            return self._finish(call, self._err("InvalidParameter.deliverModel",
                                                "deliver model missing"))
        result = {"success": True, "result": {"outTrackId": track, "deliverResults": [
            {"spaceType": "IM_GROUP" if group else "IM_ROBOT", "spaceId": dest,
             "success": True, "carrierId": f"carrier{next(self._ids)}"}]}}
        if track in self.cards:
            call.api = "send_duplicate"
            return self._finish(call, web.json_response(result), ok=True)
        if (bad := self._gate(dest, "createAndDeliver")) is not None:
            return self._finish(call, bad)
        self.cards[track] = {"dest": dest, "group": group, "params": dict(params),
                             "updates": 0, "template": body["cardTemplateId"],
                             "callback_type": body.get("callbackType")}
        return self._finish(call, web.json_response(result), ok=True)

    async def update_card(self, request: web.Request) -> web.Response:
        body = await self._json(request) or {}
        track = str(body.get("outTrackId") or "")
        call = self.recorder.add(Call(PLATFORM, "update_card", request.path, body))
        if (bad := self._auth(request)) is not None:
            return self._finish(call, bad)
        if self.faults.take("server_error"):
            return self._finish(call, self._err("ServiceUnavailable", "system busy", 500))
        card = self.cards.get(track)
        params = self._param_map(body)
        if card is None:
            return self._finish(call, self._err("card.notFound", "card instance not found",
                                                404))
        if params is None:
            return self._finish(call, self._err("InvalidParameter", "string cardParamMap"))
        call.dest = card["dest"]
        by_key = (body.get("cardUpdateOptions") or {}).get("updateCardDataByKey")
        card["params"] = {**card["params"], **params} if by_key else dict(params)
        card["updates"] += 1
        return self._finish(call, web.json_response({"success": True, "result": True}),
                            ok=True)

    async def file_download(self, request: web.Request) -> web.Response:
        body = await self._json(request) or {}
        call = self.recorder.add(Call(PLATFORM, "media", request.path, body))
        if (bad := self._auth(request)) is not None:
            return self._finish(call, bad)
        code = str(body.get("downloadCode") or "")
        if body.get("robotCode") != self.robot_code or code not in self.media:
            return self._finish(call, self._err("InvalidParameter.downloadCode",
                                                "downloadCode invalid or expired"))
        file_id = secrets.token_hex(12)
        self.files[file_id] = code
        url = f"{request.scheme}://{request.host}/sim/dingtalk/files/{file_id}.file"
        return self._finish(call, web.json_response({"downloadUrl": url}), ok=True)

    async def file_get(self, request: web.Request) -> web.Response:
        file_id = request.match_info["name"].removesuffix(".file")
        code = self.files.get(file_id)
        if code is None or code not in self.media:
            return web.Response(status=404, text="not found")
        data, ctype = self.media[code]
        return web.Response(body=data, content_type=ctype)

    # -- web sign-in (H5 免登, oapi) --------------------------------------------------------
    def issue_web_code(self, external_user_id: str, ttl_s: float = WEB_CODE_TTL_S) -> str:
        """What ``dd.runtime.permission.requestAuthCode`` gives the H5 page: single use,
        5 minutes."""
        code = "dac" + secrets.token_hex(16)
        self.web_codes[code] = {"user": external_user_id, "expires": time.time() + ttl_s,
                                "used": False}
        return code

    async def oauth_userinfo(self, request: web.Request) -> web.Response:
        body = await self._json(request) or {}
        code = str(body.get("code") or "")
        call = self.recorder.add(Call(PLATFORM, "oauth", request.path, {"code": code}))

        def answer(payload: dict) -> web.Response:
            call.result = {**payload, "ok": payload.get("errcode") == 0}
            return web.json_response(payload)

        tok = request.query.get("access_token", "")
        exp = self.tokens.get(tok)
        if not tok or exp is None or exp < time.time() or self.faults.take("token_invalid"):
            self.tokens.pop(tok, None)
            return answer({"errcode": 40014, "errmsg": "不合法的access_token"})
        entry = self.web_codes.get(code)
        if entry is None or entry["used"] or entry["expires"] < time.time():
            return answer({"errcode": 40078, "errmsg": "不存在的临时授权码"})
        entry["used"] = True
        call.dest = entry["user"]
        return answer({"errcode": 0, "errmsg": "ok", "request_id": secrets.token_hex(8),
                       "result": {"userid": entry["user"], "name": "",
                                  "unionid": "union_" + entry["user"], "device_id": "",
                                  "sys": False, "associated_unionid": ""}})

    # == callbacks into the bot ============================================================
    def new_msg_id(self) -> str:
        return "msg" + secrets.token_hex(10)

    def robot_payload(self, user: str, msgtype: str, fields: dict[str, Any],
                      group: str | None = None, msg_id: str | None = None,
                      nick: str = "") -> dict[str, Any]:
        now = int(time.time() * 1000)
        conv = group or f"cid-p2p-{user}"
        payload: dict[str, Any] = {
            "msgId": msg_id or self.new_msg_id(), "msgtype": msgtype, "createAt": now,
            "conversationType": "2" if group else "1", "conversationId": conv,
            "senderId": f"$:LWCP_v1:${user}", "senderStaffId": user,
            "senderNick": nick or user, "chatbotUserId": "$:LWCP_v1:$bot",
            "robotCode": self.robot_code, "isAdmin": False, "senderCorpId": self.corp_id,
            "chatbotCorpId": self.corp_id, "isInAtList": True,
            "sessionWebhook": f"https://oapi.dingtalk.com/robot/sendBySession?session={conv}",
            "sessionWebhookExpiredTime": now + 90 * 60 * 1000,
        }
        if group:
            payload["conversationTitle"] = f"群 {group}"
            payload["atUsers"] = [{"dingtalkId": "$:LWCP_v1:$bot"}]
        payload.update(fields)
        return payload

    def sign_robot(self, timestamp: int | str | None = None,
                   secret: str | None = None) -> dict[str, str]:
        """Headers of a robot callback (``timestamp`` ms + ``sign``)."""
        ts = str(timestamp if timestamp is not None else int(time.time() * 1000))
        return {"timestamp": ts, "sign": robot_sign(secret or self.app_secret, ts),
                "Content-Type": "application/json"}

    @staticmethod
    def _url(bot_url: str, path: str) -> str:
        base = str(bot_url).rstrip("/")
        for p in (EVENTS_PATH, ROBOT_PATH):
            if base.endswith(p):
                base = base[: -len(p)]
        return base + path

    async def post_robot(self, bot_url: str, body: bytes | dict, headers: dict | None = None,
                         session: aiohttp.ClientSession | None = None) -> tuple[int, str]:
        """A robot message the way DingTalk delivers it: over Stream when the bot holds a
        connection subscribed to robot messages (then ``(200, ack JSON)`` or ``(504, "")``),
        else a signed HTTP POST (given ``headers`` or raw bytes: always HTTP)."""
        if isinstance(body, dict) and headers is None and self.stream.live(topic=ROBOT_TOPIC):
            # the app is in Stream mode: DingTalk pushes the message over its connection
            ack = await self.stream.push(ROBOT_TOPIC, body)
            return (200, json.dumps(ack, ensure_ascii=False)) if ack else (504, "")
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        own = session is None
        session = session or aiohttp.ClientSession()
        try:
            async with session.post(self._url(bot_url, ROBOT_PATH), data=data,
                                    headers=headers if headers is not None
                                    else self.sign_robot()) as resp:
                return resp.status, await resp.text()
        finally:
            if own:
                await session.close()

    async def send_text(self, bot_url: str, user: str, text: str, group: str | None = None,
                        msg_id: str | None = None) -> tuple[int, str]:
        payload = self.robot_payload(user, "text", {"text": {"content": text}}, group, msg_id)
        return await self.post_robot(bot_url, payload)

    async def send_picture(self, bot_url: str, user: str, download_code: str,
                           group: str | None = None, msg_id: str | None = None
                           ) -> tuple[int, str]:
        payload = self.robot_payload(user, "picture", {"content": {
            "downloadCode": download_code, "pictureDownloadCode": "pic-" + download_code}},
            group, msg_id)
        return await self.post_robot(bot_url, payload)

    async def send_audio(self, bot_url: str, user: str, download_code: str,
                         duration_ms: int = 3000, recognition: str | None = None,
                         group: str | None = None, msg_id: str | None = None
                         ) -> tuple[int, str]:
        content: dict[str, Any] = {"downloadCode": download_code, "duration": duration_ms}
        if recognition is not None:
            content["recognition"] = recognition
        payload = self.robot_payload(user, "audio", {"content": content}, group, msg_id)
        return await self.post_robot(bot_url, payload)

    async def send_rich_text(self, bot_url: str, user: str, parts: list[dict],
                             group: str | None = None, msg_id: str | None = None
                             ) -> tuple[int, str]:
        payload = self.robot_payload(user, "richText", {"content": {"richText": parts}},
                                     group, msg_id)
        return await self.post_robot(bot_url, payload)

    # -- encrypted event subscription ----------------------------------------------------
    def seal_event(self, plain: dict | str, timestamp: int | str | None = None,
                   nonce: str | None = None) -> tuple[dict[str, str], bytes]:
        """(query, body) of an event-subscription POST, encrypted + signed with the SDK."""
        text = plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False)
        ts = str(timestamp if timestamp is not None else int(time.time() * 1000))
        sealed = self.crypto.encrypt_message(text, nonce=nonce or secrets.token_hex(4),
                                             timestamp=ts)
        query = {"msg_signature": sealed["msg_signature"], "timestamp": sealed["timeStamp"],
                 "nonce": sealed["nonce"]}
        return query, json.dumps({"encrypt": sealed["encrypt"]}).encode()

    async def post_event(self, bot_url: str, query: dict[str, str], body: bytes,
                         session: aiohttp.ClientSession | None = None) -> tuple[int, str]:
        own = session is None
        session = session or aiohttp.ClientSession()
        try:
            async with session.post(self._url(bot_url, EVENTS_PATH), params=query, data=body,
                                    headers={"Content-Type": "application/json"}) as resp:
                return resp.status, await resp.text()
        finally:
            if own:
                await session.close()

    def open_answer(self, text: str) -> str:
        """Verify + decrypt the bot's encrypted answer (should be ``success``)."""
        data = json.loads(text)
        return self.crypto.decrypt_encrypt_str(data["msg_signature"], data["timeStamp"],
                                               data["nonce"], data["encrypt"])

    async def send_event(self, bot_url: str, plain: dict, **kw) -> tuple[int, str]:
        query, body = self.seal_event(plain)
        return await self.post_event(bot_url, query, body, **kw)

    async def check_url(self, bot_url: str) -> tuple[int, str]:
        return await self.send_event(bot_url, {"EventType": "check_url"})

    def card_callback(self, user: str, out_track_id: str, token: str,
                      action_id: str = "btn_0", form: dict | None = None) -> dict[str, Any]:
        card = self.cards.get(out_track_id) or {}
        group = card.get("dest") if card.get("group") else None
        payload: dict[str, Any] = {
            "type": "actionCallback", "outTrackId": out_track_id, "userId": user,
            "corpId": self.corp_id, "extension": "{}",
            "content": json.dumps({"cardPrivateData": {
                "actionIds": [action_id], "params": {"action": token, **(form or {})}}},
                ensure_ascii=False),
        }
        if group:
            payload.update({"spaceType": "IM_GROUP", "openConversationId": group})
        return payload

    async def tap_card(self, bot_url: str, user: str, out_track_id: str, token: str,
                       action_id: str = "btn_0", form: dict | None = None) -> tuple[int, str]:
        """A tap, the way DingTalk calls back for this card: over Stream when it was created
        with ``callbackType: STREAM`` (then ``(200, ack JSON)``, or ``(504, "")`` when no
        connection acknowledged it), else through the encrypted event endpoint."""
        if (self.cards.get(out_track_id) or {}).get("callback_type") == "STREAM":
            ack = await self.stream_tap(user, out_track_id, token, action_id, form)
            return (200, json.dumps(ack, ensure_ascii=False)) if ack else (504, "")
        return await self.send_event(bot_url, self.card_callback(user, out_track_id, token,
                                                                 action_id, form))


    # == Stream mode: the same payloads over the bot's long connection ========================
    async def stream_robot(self, user: str, msgtype: str, fields: dict[str, Any],
                           group: str | None = None, msg_id: str | None = None,
                           timeout: float = 5.0) -> dict | None:
        """A robot message pushed over Stream; the bot's ack (or None)."""
        payload = self.robot_payload(user, msgtype, fields, group=group, msg_id=msg_id)
        return await self.stream.push(ROBOT_TOPIC, payload, timeout=timeout)

    async def stream_text(self, user: str, text: str, group: str | None = None,
                          msg_id: str | None = None, timeout: float = 5.0) -> dict | None:
        return await self.stream_robot(user, "text", {"text": {"content": text}}, group=group,
                                       msg_id=msg_id, timeout=timeout)

    async def stream_tap(self, user: str, out_track_id: str, token: str,
                         action_id: str = "btn_0", form: dict | None = None,
                         timeout: float = 5.0) -> dict | None:
        """A card tap (card created with ``callbackType: STREAM``) pushed over Stream."""
        data = self.card_callback(user, out_track_id, token, action_id, form)
        return await self.stream.push(CARD_TOPIC, data, timeout=timeout)


__all__ = ["DingTalkSim", "robot_sign"]
