"""Fake WeCom: the app API the bot calls, and signed/encrypted callbacks into the bot.

API (``add_routes``): ``GET /cgi-bin/gettoken`` (checks corpid/corpsecret), ``POST
/cgi-bin/message/send`` (30/min per member → 45033; ``enable_duplicate_check`` drops a repeat
of the same content to the same user inside the interval; ``template_card`` answers with a
``response_code``), ``POST /cgi-bin/message/update_template_card`` (response codes are
single-use), ``POST /cgi-bin/appchat/send``, ``GET /cgi-bin/media/get`` (bytes registered with
``add_media``), ``GET /cgi-bin/auth/getuserinfo`` (OAuth2 web sign-in: a code minted by
``issue_web_code`` answers the member's ``userid`` once, within 5 minutes; else 40029).
Faults (``self.faults``) make the next calls answer rate-limited, 5xx or token-expired.

Callbacks are encrypted and signed with wechatpy's ``WeChatCrypto`` — the SDK, not our code.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
import time
from typing import Any

import aiohttp
import defusedxml.ElementTree as SafeET
from aiohttp import web
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto

from simulator.core import Call, Faults, Recorder, SlidingLimit

PLATFORM = "wecom"
WEBHOOK_PATH = "/webhooks/wecom"
WEB_CODE_TTL_S = 300  # OAuth2 codes live 5 minutes and work once


def _cdata(value: Any) -> str:
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


class WeComSim:
    def __init__(self, recorder: Recorder, corp_id: str, agent_id: str, secret: str,
                 token: str, aes_key: str, per_member: tuple[int, float] = (30, 60.0)):
        self.recorder = recorder
        self.corp_id = corp_id
        self.agent_id = str(agent_id)
        self.secret = secret
        self.token = token
        self.aes_key = aes_key
        self.crypto = WeChatCrypto(token, aes_key, corp_id)
        self.faults = Faults()
        self.limit = SlidingLimit(*per_member)
        self.untrusted_ip = False  # every API call answers 60020 (企业可信IP) while set
        self.daily_quota_left: int | None = None  # calls left today; then 45009 (daily)
        self.tokens: dict[str, float] = {}  # access_token -> expiry (epoch s)
        self.token_ttl = 7200
        self.media: dict[str, tuple[bytes, str]] = {}
        self.response_codes: dict[str, dict] = {}  # code -> {"user", "task_id", "used"}
        self._dups: dict[tuple[str, str], tuple[float, str]] = {}
        self._ids = itertools.count(1)
        self._msg_seq = itertools.count(int(time.time() * 1000))
        self.web_codes: dict[str, dict] = {}  # OAuth2 code -> {"user", "expires", "used", …}

    # == fake API ==========================================================================
    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/cgi-bin/gettoken", self.gettoken)
        app.router.add_post("/cgi-bin/message/send", self.message_send)
        app.router.add_post("/cgi-bin/message/update_template_card", self.update_card)
        app.router.add_post("/cgi-bin/appchat/send", self.appchat_send)
        app.router.add_get("/cgi-bin/media/get", self.media_get)
        app.router.add_get("/cgi-bin/auth/getuserinfo", self.oauth_userinfo)

    def add_media(self, media_id: str, data: bytes, content_type: str = "audio/amr") -> None:
        self.media[media_id] = (data, content_type)

    def sent(self, user: str | None = None) -> list[Call]:
        """Messages actually delivered (not dropped as duplicates or rate-limited)."""
        return [c for c in self.recorder.of(PLATFORM, "send")
                if c.result and c.result.get("errcode") == 0
                and (user is None or c.dest == user)]

    def updates(self) -> list[Call]:
        return [c for c in self.recorder.of(PLATFORM, "update_card")
                if c.result and c.result.get("errcode") == 0]

    @staticmethod
    def _err(code: int, msg: str, status: int = 200) -> web.Response:
        return web.json_response({"errcode": code, "errmsg": msg}, status=status)

    def _auth(self, request: web.Request) -> web.Response | None:
        tok = request.query.get("access_token", "")
        if not tok:
            return self._err(41001, "access_token missing")
        exp = self.tokens.get(tok)
        if exp is None:
            return self._err(40014, "invalid access_token")
        if exp < time.time():
            return self._err(42001, "access_token expired")
        if self.faults.take("token_invalid"):
            self.tokens.pop(tok, None)
            return self._err(42001, "access_token expired")
        return None

    async def gettoken(self, request: web.Request) -> web.Response:
        q = request.query
        call = self.recorder.add(Call(PLATFORM, "token", request.path,
                                      {"corpid": q.get("corpid", "")}))
        if q.get("corpid") != self.corp_id:
            call.result = {"errcode": 40013}
            return self._err(40013, "invalid corpid")
        if q.get("corpsecret") != self.secret:
            call.result = {"errcode": 40001}
            return self._err(40001, "invalid credential")
        tok = "simtok-" + secrets.token_hex(8)
        self.tokens[tok] = time.time() + self.token_ttl
        call.result = {"errcode": 0}
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": tok,
                                  "expires_in": self.token_ttl})

    async def _json_body(self, request: web.Request) -> dict | None:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def message_send(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        user = str((body or {}).get("touser") or "")
        call = self.recorder.add(Call(PLATFORM, "send", request.path, body, dest=user))

        def answer(payload: dict, status: int = 200) -> web.Response:
            call.result = payload
            return web.json_response(payload, status=status)

        if (bad := self._auth(request)) is not None:
            call.result = json.loads(bad.text or "{}")
            return bad
        if body is None or not user:
            return answer({"errcode": 40035, "errmsg": "invalid args"})
        if str(body.get("agentid")) != self.agent_id:
            return answer({"errcode": 40056, "errmsg": "invalid agentid"})
        msgtype = body.get("msgtype")
        if msgtype not in ("text", "markdown", "template_card", "image", "news", "textcard"):
            return answer({"errcode": 40008, "errmsg": "invalid message type"})
        if self.faults.take("server_error"):  # WeCom answers "system busy" with HTTP 200
            return answer({"errcode": -1, "errmsg": "system busy"})
        if self.untrusted_ip:  # since 2022-06: calls from an IP not in 企业可信IP
            return answer({"errcode": 60020, "errmsg": "not allow to access from your ip,"
                           f" hint: [{secrets.token_hex(6)}], from ip: {request.remote}, more"
                           " info at https://open.work.weixin.qq.com/devtool/query?e=60020"})
        if self.daily_quota_left is not None:
            if self.daily_quota_left <= 0:
                return answer({"errcode": 45009, "errmsg": "reach max api daily quota limit,"
                               " hint: [" + secrets.token_hex(6) + "]"})
            self.daily_quota_left -= 1
        if self.faults.take("rate_limited"):
            return answer({"errcode": 45033, "errmsg": "api freq out of limit"})
        content = json.dumps(body.get(msgtype), sort_keys=True, ensure_ascii=False)
        now = time.time()
        # every delivered message is remembered; a request that asks for the duplicate check
        # is dropped when the same content reached the same user within its interval
        key = (user, hashlib.sha256(f"{msgtype}:{content}".encode()).hexdigest())
        if body.get("enable_duplicate_check"):
            interval = int(body.get("duplicate_check_interval") or 1800)
            prev = self._dups.get(key)
            if prev and now - prev[0] < interval:
                call.api = "send_duplicate"
                return answer({"errcode": 0, "errmsg": "ok", "msgid": prev[1]})
        if not self.limit.allow(user):
            return answer({"errcode": 45033, "errmsg": "api freq out of limit"})
        msgid = f"simmsg{next(self._ids)}"
        self._dups[key] = (now, msgid)
        payload: dict[str, Any] = {"errcode": 0, "errmsg": "ok", "msgid": msgid}
        if msgtype == "template_card":
            code = "rc-" + secrets.token_hex(8)
            task_id = str((body.get("template_card") or {}).get("task_id") or "")
            self.response_codes[code] = {"user": user, "task_id": task_id, "used": False}
            payload["response_code"] = code
        return answer(payload)

    async def appchat_send(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        call = self.recorder.add(Call(PLATFORM, "appchat_send", request.path, body,
                                      dest=str((body or {}).get("chatid") or "")))
        if (bad := self._auth(request)) is not None:
            call.result = json.loads(bad.text or "{}")
            return bad
        call.result = {"errcode": 0, "errmsg": "ok", "msgid": f"simmsg{next(self._ids)}"}
        return web.json_response(call.result)

    async def update_card(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        call = self.recorder.add(Call(PLATFORM, "update_card", request.path, body))
        if (bad := self._auth(request)) is not None:
            call.result = json.loads(bad.text or "{}")
            return bad
        if self.faults.take("server_error"):
            call.result = {"errcode": -1, "errmsg": "system busy"}
            return web.json_response(call.result)
        body = body or {}
        code = str(body.get("response_code") or "")
        entry = self.response_codes.get(code)
        if entry is None or entry["used"]:
            call.result = {"errcode": 40078, "errmsg": "invalid response_code (unknown or used)"}
            return web.json_response(call.result)
        if str(body.get("agentid")) != self.agent_id:
            call.result = {"errcode": 40056, "errmsg": "invalid agentid"}
            return web.json_response(call.result)
        if "button" not in body and "template_card" not in body:
            call.result = {"errcode": 40035, "errmsg": "invalid args"}
            return web.json_response(call.result)
        entry["used"] = True
        call.dest = entry["user"]
        call.result = {"errcode": 0, "errmsg": "ok", "invaliduser": []}
        return web.json_response(call.result)

    async def media_get(self, request: web.Request) -> web.StreamResponse:
        call = self.recorder.add(Call(PLATFORM, "media", request.path,
                                      {"media_id": request.query.get("media_id", "")}))
        if (bad := self._auth(request)) is not None:
            call.result = json.loads(bad.text or "{}")
            return bad
        item = self.media.get(request.query.get("media_id", ""))
        if item is None:
            call.result = {"errcode": 40007}
            return self._err(40007, "invalid media_id")
        call.result = {"errcode": 0, "bytes": len(item[0])}
        return web.Response(body=item[0], content_type=item[1], headers={
            "Content-Disposition": f'attachment; filename="{request.query["media_id"]}"'})

    # -- web sign-in (OAuth2) --------------------------------------------------------------
    def issue_web_code(self, external_user_id: str, member: bool = True,
                       ttl_s: float = WEB_CODE_TTL_S) -> str:
        """What the workbench appends to the app's URL (``?code=``): single use, 5 minutes.
        ``member=False``: someone outside the corp (WeCom answers an ``openid`` instead)."""
        code = "wc-" + secrets.token_urlsafe(18)
        self.web_codes[code] = {"user": external_user_id, "expires": time.time() + ttl_s,
                                "used": False, "member": member}
        return code

    async def oauth_userinfo(self, request: web.Request) -> web.Response:
        code = request.query.get("code", "")
        call = self.recorder.add(Call(PLATFORM, "oauth", request.path, {"code": code}))
        if (bad := self._auth(request)) is not None:
            call.result = json.loads(bad.text or "{}")
            return bad
        entry = self.web_codes.get(code)
        if entry is None or entry["used"] or entry["expires"] < time.time():
            call.result = {"errcode": 40029, "errmsg": "invalid code"}
            return web.json_response(call.result)
        entry["used"] = True
        call.dest = entry["user"]
        if entry["member"]:
            call.result = {"errcode": 0, "errmsg": "ok", "userid": entry["user"],
                           "user_ticket": "ut-" + secrets.token_hex(8)}
        else:
            call.result = {"errcode": 0, "errmsg": "ok", "openid": "o" + entry["user"],
                           "external_userid": ""}
        return web.json_response(call.result)

    # == callbacks into the bot ============================================================
    def new_msg_id(self) -> str:
        return str(next(self._msg_seq))

    def message_xml(self, user: str, msg_type: str, fields: dict[str, Any],
                    create_time: int | None = None) -> str:
        parts = [f"<ToUserName>{_cdata(self.corp_id)}</ToUserName>",
                 f"<FromUserName>{_cdata(user)}</FromUserName>",
                 f"<CreateTime>{create_time or int(time.time())}</CreateTime>",
                 f"<MsgType>{_cdata(msg_type)}</MsgType>"]
        for k, v in fields.items():
            parts.append(f"<{k}>{v}</{k}>" if isinstance(v, int | float) else
                         f"<{k}>{_cdata(v)}</{k}>")
        parts.append(f"<AgentID>{self.agent_id}</AgentID>")
        return "<xml>" + "".join(parts) + "</xml>"

    def sign_callback(self, inner_xml: str, timestamp: int | str | None = None,
                      nonce: str | None = None) -> tuple[dict[str, str], bytes]:
        """(query, body) of a callback POST, encrypted and signed with the SDK."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or str(secrets.randbelow(10**10))
        reply = SafeET.fromstring(self.crypto.encrypt_message(inner_xml, nonce, ts))
        encrypt = reply.findtext("Encrypt") or ""
        sig = reply.findtext("MsgSignature") or ""
        body = (f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName>"
                f"<Encrypt>{_cdata(encrypt)}</Encrypt>"
                f"<AgentID>{_cdata(self.agent_id)}</AgentID></xml>").encode()
        return {"msg_signature": sig, "timestamp": ts, "nonce": nonce}, body

    def sign_url_check(self, echo_plain: str, timestamp: int | str | None = None,
                       nonce: str | None = None) -> dict[str, str]:
        """Query of a URL-check GET for ``echo_plain``."""
        from wechatpy.crypto import _get_signature

        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or str(secrets.randbelow(10**10))
        echostr = PrpCrypto(self.crypto.key).encrypt(echo_plain, self.corp_id).decode()
        return {"msg_signature": _get_signature(self.token, ts, nonce, echostr),
                "timestamp": ts, "nonce": nonce, "echostr": echostr}

    @staticmethod
    def _url(bot_url: str) -> str:
        bot_url = str(bot_url).rstrip("/")
        return bot_url if bot_url.endswith(WEBHOOK_PATH) else bot_url + WEBHOOK_PATH

    async def post(self, bot_url: str, query: dict[str, str], body: bytes,
                   session: aiohttp.ClientSession | None = None) -> tuple[int, str]:
        own = session is None
        session = session or aiohttp.ClientSession()
        try:
            async with session.post(self._url(bot_url), params=query, data=body,
                                    headers={"Content-Type": "text/xml"}) as resp:
                return resp.status, await resp.text()
        finally:
            if own:
                await session.close()

    async def url_check(self, bot_url: str, echo_plain: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, \
                session.get(self._url(bot_url), params=self.sign_url_check(echo_plain)) as r:
            return r.status, await r.text()

    async def send_xml(self, bot_url: str, inner_xml: str, **kw) -> tuple[int, str]:
        query, body = self.sign_callback(inner_xml)
        return await self.post(bot_url, query, body, **kw)

    async def send_text(self, bot_url: str, user: str, text: str,
                        msg_id: str | None = None) -> tuple[int, str]:
        xml = self.message_xml(user, "text", {"Content": text,
                                              "MsgId": msg_id or self.new_msg_id()})
        return await self.send_xml(bot_url, xml)

    async def send_voice(self, bot_url: str, user: str, media_id: str,
                         msg_id: str | None = None, fmt: str = "amr") -> tuple[int, str]:
        xml = self.message_xml(user, "voice", {"MediaId": media_id, "Format": fmt,
                                               "MsgId": msg_id or self.new_msg_id()})
        return await self.send_xml(bot_url, xml)

    async def send_image(self, bot_url: str, user: str, media_id: str,
                         pic_url: str = "https://wework.qpic.cn/sim.jpg",
                         msg_id: str | None = None) -> tuple[int, str]:
        xml = self.message_xml(user, "image", {"PicUrl": pic_url, "MediaId": media_id,
                                               "MsgId": msg_id or self.new_msg_id()})
        return await self.send_xml(bot_url, xml)

    async def send_location(self, bot_url: str, user: str, lat: float, lon: float,
                            label: str = "", msg_id: str | None = None) -> tuple[int, str]:
        xml = self.message_xml(user, "location", {
            "Location_X": lat, "Location_Y": lon, "Scale": 15, "Label": label,
            "MsgId": msg_id or self.new_msg_id()})
        return await self.send_xml(bot_url, xml)

    def tap_xml(self, user: str, event_key: str, task_id: str, response_code: str | None = None,
                create_time: int | None = None, selected: dict[str, Any] | None = None
                ) -> tuple[str, str]:
        """(inner xml, response_code) of a ``template_card_event``; the code is registered.
        ``selected``: the card's dropdown choices (``button_selection``), question key →
        option id(s), sent as WeCom's ``SelectedItems``."""
        code = response_code or "rc-" + secrets.token_hex(8)
        self.response_codes.setdefault(code, {"user": user, "task_id": task_id, "used": False})
        xml = self.message_xml(user, "event", {
            "Event": "template_card_event", "EventKey": event_key, "TaskId": task_id,
            "CardType": "button_interaction", "ResponseCode": code}, create_time=create_time)
        if selected:
            items = "".join(
                f"<SelectedItem><QuestionKey>{_cdata(str(k))}</QuestionKey><OptionIds>"
                + "".join(f"<OptionId>{_cdata(str(i))}</OptionId>"
                          for i in (v if isinstance(v, list) else [v]))
                + "</OptionIds></SelectedItem>" for k, v in selected.items())
            xml = xml.replace("</xml>", f"<SelectedItems>{items}</SelectedItems></xml>")
        return xml, code

    async def tap_card(self, bot_url: str, user: str, event_key: str, task_id: str,
                       response_code: str | None = None,
                       selected: dict[str, Any] | None = None) -> tuple[int, str]:
        xml, _code = self.tap_xml(user, event_key, task_id, response_code, selected=selected)
        return await self.send_xml(bot_url, xml)

    async def send_event(self, bot_url: str, user: str, event: str,
                         event_key: str = "") -> tuple[int, str]:
        xml = self.message_xml(user, "event", {"Event": event, "EventKey": event_key})
        return await self.send_xml(bot_url, xml)


__all__ = ["WeComSim"]
