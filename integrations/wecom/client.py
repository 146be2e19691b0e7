"""WeCom app API client (aiohttp): token cache, send, update card, media download.

The access token is cached until ``expires_in`` minus a margin and refreshed once, then the
call retried once, when WeCom says it is invalid/expired (40014, 42001, 40001). Errors map to the
core's delivery errors: rate-limit codes → ``RateLimited``; -1 (which comes with HTTP 200), 5xx
and network errors → ``TransientError``; 60020 (the server's IP is not a trusted IP) and 45009
"daily quota" → ``ConfigurationError`` (shown on /healthz; the daily one waits for midnight);
anything else → ``PermanentError``. Secrets never reach a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp

from bot.platform import (
    ConfigurationError,
    MediaError,
    PermanentError,
    RateLimited,
    TransientError,
)

log = logging.getLogger(__name__)
DUP_CHECK_S = 1800  # a resend within this window of the original is dropped by WeCom

TOKEN_INVALID = {40014, 42001, 40001}
RATE_LIMITED = {45009, 45033, 45047}
UNTRUSTED_IP = 60020  # the server's IP is not in the app's 企业可信IP list (PROTOCOLS §9.3)
TOKEN_MARGIN_S = 300


class WeComClient:
    def __init__(self, http: aiohttp.ClientSession, api_base: str, corp_id: str, secret: str,
                 agent_id: str, clock=time.monotonic):
        self.http = http
        self.base = api_base.rstrip("/")
        self.corp_id = corp_id
        self._secret = secret
        self.agent_id = agent_id
        self.clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    # -- token --------------------------------------------------------------------------
    async def token(self, force: bool = False, stale: str | None = None) -> str:
        async with self._lock:
            if self._token and not force and self.clock() < self._expires:
                return self._token
            if force and stale is not None and self._token != stale:
                return self._token  # someone else refreshed meanwhile
            data = await self._request("GET", "/cgi-bin/gettoken",
                                       params={"corpid": self.corp_id,
                                               "corpsecret": self._secret})
            code = int(data.get("errcode") or 0)
            if code:
                raise _error(code, data, "gettoken")
            self._token = str(data["access_token"])
            ttl = int(data.get("expires_in") or 7200)
            self._expires = self.clock() + max(ttl - TOKEN_MARGIN_S, ttl / 2)
            return self._token

    async def _request(self, method: str, path: str, params: dict | None = None,
                       body: Any = None) -> dict:
        try:
            async with self.http.request(method, self.base + path, params=params,
                                         json=body) as resp:
                if resp.status >= 500:
                    raise TransientError(f"wecom {path}: HTTP {resp.status}", code=resp.status)
                if resp.status >= 400:
                    raise PermanentError(f"wecom {path}: HTTP {resp.status}", code=resp.status)
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"wecom {path}: {exc.__class__.__name__}") from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise TransientError(f"wecom {path}: non-JSON answer") from exc
        if not isinstance(data, dict):
            raise TransientError(f"wecom {path}: unexpected answer")
        return data

    async def call(self, method: str, path: str, body: Any = None,
                   params: dict | None = None) -> dict:
        """An authenticated API call; token refresh + one retry on a token-invalid code."""
        for attempt in (0, 1):
            tok = await self.token()
            data = await self._request(method, path, params={**(params or {}),
                                                             "access_token": tok}, body=body)
            code = int(data.get("errcode") or 0)
            if code == 0:
                return data
            if code in TOKEN_INVALID and attempt == 0:
                log.info("wecom token rejected (%s); refreshing", code)
                await self.token(force=True, stale=tok)
                continue
            raise _error(code, data, path)
        raise TransientError("unreachable")  # pragma: no cover

    # -- messages -----------------------------------------------------------------------
    def _send_body(self, user: str, msgtype: str, content: dict, resend: bool) -> dict:
        body = {"touser": user, "msgtype": msgtype, "agentid": _agent(self.agent_id),
                msgtype: content}
        if resend:
            # Only a resend (the first try may have landed before a crash) asks WeCom to drop
            # a repeat: on every send it would also swallow a genuine identical reply.
            body.update(enable_duplicate_check=1, duplicate_check_interval=DUP_CHECK_S)
        return body

    async def send(self, user: str, msgtype: str, content: dict, resend: bool = False) -> dict:
        data = await self.call("POST", "/cgi-bin/message/send",
                               self._send_body(user, msgtype, content, resend))
        if data.get("invaliduser"):
            raise PermanentError(f"wecom: invalid user {data.get('invaliduser')}",
                                 code="invaliduser")
        return {k: data[k] for k in ("msgid", "response_code") if data.get(k)}

    async def send_text(self, user: str, text: str) -> dict:
        return await self.send(user, "text", {"content": text})

    async def send_markdown(self, user: str, text: str) -> dict:
        return await self.send(user, "markdown", {"content": text})

    async def send_card(self, user: str, template_card: dict, resend: bool = False) -> dict:
        return await self.send(user, "template_card", template_card, resend)

    async def send_chat(self, chat_id: str, msgtype: str, content: dict) -> dict:
        """A group chat the app created (``appchat``); self-built apps cannot post elsewhere."""
        data = await self.call("POST", "/cgi-bin/appchat/send",
                               {"chatid": chat_id, "msgtype": msgtype, msgtype: content})
        return {k: data[k] for k in ("msgid",) if data.get(k)}

    async def update_card(self, users: list[str], response_code: str, update: dict) -> dict:
        """``update`` is ``{"button": {"replace_name": …}}`` or ``{"template_card": {…}}``."""
        body = {"userids": users, "agentid": _agent(self.agent_id),
                "response_code": response_code, **update}
        data = await self.call("POST", "/cgi-bin/message/update_template_card", body)
        return {"invaliduser": data["invaliduser"]} if data.get("invaliduser") else {}

    # -- web sign-in ----------------------------------------------------------------------
    async def oauth_user(self, code: str) -> dict:
        """OAuth2 ``code`` (from the workbench's redirect) → ``{"userid": …}`` for a member
        or ``{"openid": …}`` for a non-member; 40029 = invalid, used or expired code."""
        return await self.call("GET", "/cgi-bin/auth/getuserinfo", params={"code": code})

    # -- media --------------------------------------------------------------------------
    async def get_media(self, media_id: str, max_bytes: int) -> bytes:
        for attempt in (0, 1):
            tok = await self.token()
            try:
                async with self.http.get(self.base + "/cgi-bin/media/get",
                                         params={"access_token": tok,
                                                 "media_id": media_id}) as resp:
                    if resp.status != 200:
                        raise MediaError(f"wecom media: HTTP {resp.status}")
                    ctype = resp.headers.get("Content-Type", "")
                    if resp.content_length is not None and resp.content_length > max_bytes:
                        raise MediaError("wecom media: too large")
                    chunks, size = [], 0
                    async for chunk in resp.content.iter_chunked(65536):
                        size += len(chunk)
                        if size > max_bytes:
                            raise MediaError("wecom media: too large")
                        chunks.append(chunk)
                    data = b"".join(chunks)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise MediaError(f"wecom media: {exc.__class__.__name__}") from exc
            if "json" in ctype or "text/plain" in ctype or data[:1] == b"{":
                try:
                    err = json.loads(data)
                except ValueError:
                    return data
                code = int(err.get("errcode") or 0) if isinstance(err, dict) else 0
                if code in TOKEN_INVALID and attempt == 0:
                    await self.token(force=True, stale=tok)
                    continue
                raise MediaError(f"wecom media: errcode {code}")
            return data
        raise MediaError("wecom media: token refresh failed")


def _agent(agent_id: str) -> int | str:
    return int(agent_id) if str(agent_id).isdigit() else agent_id


def _error(code: int, data: dict, what: str):
    errmsg = str(data.get("errmsg", ""))
    msg = f"wecom {what}: errcode {code} {errmsg[:120]}"
    if code == UNTRUSTED_IP:
        ip = errmsg.rsplit("from ip:", 1)[-1].split(",")[0].strip() if "from ip:" in errmsg \
            else "this server's egress IP"
        return ConfigurationError(
            msg, code=code, hint=f"add {ip} to the app's 企业可信IP (应用管理 → 开发者接口)")
    if code == 45009 and "daily" in errmsg:
        return ConfigurationError(msg, code=code, retry_after=_until_midnight(),
                                  hint="WeCom's daily API quota is used up: sends resume"
                                       " after midnight (Beijing time)")
    if code in RATE_LIMITED:
        return RateLimited(msg, code=code, retry_after=60.0 if code == 45009 else None)
    if code == -1:
        return TransientError(msg, code=code)
    return PermanentError(msg, code=code)


def _until_midnight() -> float:
    """Seconds until the next midnight in Beijing, when WeCom's daily quota resets."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=5, microsecond=0)
    return (midnight - now).total_seconds()
