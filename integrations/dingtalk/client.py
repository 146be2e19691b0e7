"""DingTalk app-robot API client (aiohttp) against ``api.dingtalk.com/v1.0`` (PROTOCOLS §4/§5).

- Token: ``POST /v1.0/oauth2/accessToken {appKey, appSecret}`` → ``accessToken``/``expireIn``;
  cached until shortly before expiry, refreshed once (and the call retried once) when DingTalk
  answers 401 / ``InvalidAuthentication``. Sent as the ``x-acs-dingtalk-access-token`` header.
- Send: ``oToMessages/batchSend`` to users, ``groupMessages/send`` to groups, with ``msgKey``
  ``sampleText``/``sampleMarkdown`` and ``msgParam`` as a JSON *string*.
  DingTalk silently drops identical content sent to the same user within a day (documented for
  work notifications, reported for robots too): a repeated reminder must differ (date, count) or
  be aggregated, or the user never sees it — and we cannot detect the drop.
- Cards: ``card/instances/createAndDeliver`` and ``PUT card/instances`` (update by key).
- Media: ``robot/messageFiles/download`` → a temporary ``downloadUrl`` fetched with a byte cap;
  only the API host or ``*.dingtalk.com`` over https is fetched, no redirects (SSRF).

Errors → the core's delivery errors (PROTOCOLS §9.4): HTTP 403 ``Forbidden.AccessDenied.
QpsLimitFor…`` (20 calls/s per app per API), 429, errcode 90018, the 5-minute IP ban page or a
flow-controlled recipient → ``RateLimited``; ``AccessTokenPermissionDenied`` (a missing
permission scope, named from ``requiredScopes``; no token refresh) and ``ApiCountLimitForOrg``
(the org's monthly quota) → ``ConfigurationError``, shown on /healthz; 5xx and network errors →
``TransientError``; anything else → ``PermanentError``. The client itself keeps each API under
20 calls/s. Secrets and tokens never reach a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.platform import (
    ConfigurationError,
    MediaError,
    PermanentError,
    RateLimited,
    TransientError,
)

log = logging.getLogger(__name__)

TOKEN_MARGIN_S = 300
TOKEN_INVALID_CODES = {"InvalidAuthentication", "invalidAuthentication"}
# 403 with ``accessdenieddetail.requiredScopes``: the app lacks a permission scope — not a bad
# token (PROTOCOLS §9.4); a refresh would not help
SCOPE_DENIED = "Forbidden.AccessDenied.AccessTokenPermissionDenied"
ORG_QUOTA = {"Forbidden.AccessDenied.ApiCountLimitForOrg", "90020"}
BATCH_USERS = 20
API_QPS = 20  # per app per API (the throttling doc); the client keeps under it itself
RATE_CODES = {"Throttling", "Throttling.Api", "Throttling.User", "90018",
              "Forbidden.AccessDenied.QpsLimitForApi",
              "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"}


class TokenInvalid(Exception):
    pass


class DingTalkClient:
    def __init__(self, http: aiohttp.ClientSession, api_base: str, app_key: str,
                 app_secret: str, robot_code: str, clock=time.monotonic):
        self.http = http
        self.base = api_base.rstrip("/")
        self.api_host = (urlsplit(self.base).hostname or "").lower()
        self.app_key = app_key
        self._secret = app_secret
        self.robot_code = robot_code
        self.clock = clock
        # "STREAM": taps come over the Stream connection; "HTTP" needs a registered callback
        # route (PROTOCOLS §9.1), which FieldBot does not use
        self.callback_type = "HTTP"
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._calls: dict[str, deque[float]] = {}  # path → its calls in the last second

    # -- token --------------------------------------------------------------------------
    async def token(self, force: bool = False, stale: str | None = None) -> str:
        async with self._lock:
            if self._token and not force and self.clock() < self._expires:
                return self._token
            if force and stale is not None and self._token not in (None, stale):
                return self._token  # someone else refreshed meanwhile
            data = await self._request("POST", "/v1.0/oauth2/accessToken",
                                       {"appKey": self.app_key, "appSecret": self._secret},
                                       token=None)
            tok = data.get("accessToken")
            if not tok:
                raise PermanentError("dingtalk accessToken: no token in answer")
            self._token = str(tok)
            ttl = _int(data.get("expireIn"), 7200)
            self._expires = self.clock() + max(ttl - TOKEN_MARGIN_S, ttl / 2)
            return self._token

    async def _request(self, method: str, path: str, body: Any = None,
                       token: str | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["x-acs-dingtalk-access-token"] = token
        try:
            async with self.http.request(method, self.base + path, json=body,
                                         headers=headers) as resp:
                status = resp.status
                retry_after = _float(resp.headers.get("Retry-After"))
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"dingtalk {path}: {exc.__class__.__name__}") from exc
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            if status >= 500 or status == 200:
                raise TransientError(f"dingtalk {path}: HTTP {status}, non-JSON answer",
                                     code=status)
            data = {}
        code = str(data.get("code") or data.get("errcode") or "")
        if code == "0":
            code = ""
        if code == SCOPE_DENIED:
            detail = data.get("accessdenieddetail") or {}
            scopes = detail.get("requiredScopes") if isinstance(detail, dict) else None
            names = ", ".join(map(str, scopes)) if isinstance(scopes, list) else "?"
            raise ConfigurationError(
                f"dingtalk {path}: the app lacks the permission scope(s) {names}", code=code,
                hint=f"grant {names} to the app (开发者后台 → 权限管理) and publish it")
        if code in ORG_QUOTA:
            raise ConfigurationError(
                f"dingtalk {path}: the organisation's monthly API quota is used up", code=code,
                retry_after=3600.0,
                hint="standard-edition orgs get 5,000 metered calls a month: upgrade the"
                     " DingTalk edition or wait for the 1st")
        if data.get("punish") == "deny" or str(data.get("status")) == "1111":
            raise RateLimited(f"dingtalk {path}: this IP is banned for 5 minutes (too many"
                              " calls)", retry_after=300.0, code="1111")
        if status == 401 or code in TOKEN_INVALID_CODES or code in ("40014", "42001"):
            if token is not None:
                raise TokenInvalid(code or str(status))
        if status == 429 or code in RATE_CODES or "throttl" in code.lower() \
                or "qpslimit" in code.lower():
            raise RateLimited(_msg(path, status, code, data), retry_after=retry_after or 1.0,
                              code=code or status)
        if status >= 500 or code in ("-1", "ServiceUnavailable", "InternalError"):
            raise TransientError(_msg(path, status, code, data), retry_after=retry_after,
                                 code=code or status)
        if status >= 400 or code:
            raise PermanentError(_msg(path, status, code, data), code=code or status)
        return data

    async def _api_slot(self, path: str) -> None:
        """At most ``API_QPS`` calls per second to one API from this process (app-wide)."""
        window = self._calls.setdefault(path, deque())
        while True:
            now = self.clock()
            while window and now - window[0] >= 1.0:
                window.popleft()
            if len(window) < API_QPS:
                window.append(now)
                return
            await asyncio.sleep(1.0 - (now - window[0]) + 0.001)

    async def call(self, method: str, path: str, body: Any = None) -> dict:
        """An authenticated call; one token refresh + retry on a token-invalid answer."""
        for attempt in (0, 1):
            await self._api_slot(path)
            tok = await self.token()
            try:
                return await self._request(method, path, body, token=tok)
            except TokenInvalid as exc:
                if attempt:
                    raise PermanentError(f"dingtalk {path}: token rejected after refresh",
                                         code=str(exc)) from exc
                log.info("dingtalk token rejected; refreshing")
                await self.token(force=True, stale=tok)
        raise TransientError("unreachable")  # pragma: no cover

    # -- messages -----------------------------------------------------------------------
    @staticmethod
    def _param(msg_key: str, text: str, title: str = "") -> str:
        if msg_key == "sampleMarkdown":
            title = title or (text.strip().splitlines() or ["FieldBot"])[0].lstrip("# ")[:40]
            return json.dumps({"title": title, "text": text}, ensure_ascii=False)
        return json.dumps({"content": text}, ensure_ascii=False)

    async def send_to_users(self, user_ids: list[str], msg_key: str, text: str,
                            title: str = "") -> dict:
        keys = []
        ids = list(user_ids)
        for i in range(0, len(ids), BATCH_USERS):  # batchSend takes ≤ 20 userIds a call
            data = await self.call("POST", "/v1.0/robot/oToMessages/batchSend", {
                "robotCode": self.robot_code, "userIds": ids[i:i + BATCH_USERS],
                "msgKey": msg_key, "msgParam": self._param(msg_key, text, title)})
            if data.get("flowControlledStaffIdList"):
                raise RateLimited("dingtalk batchSend: recipient flow-controlled", code="flow")
            if data.get("invalidStaffIdList"):
                raise PermanentError("dingtalk batchSend: invalid staff id", code="invalidStaff")
            keys.append(str(data.get("processQueryKey", "")))
        return {"process_query_key": ",".join(keys)}

    async def send_to_group(self, open_conversation_id: str, msg_key: str, text: str,
                            title: str = "") -> dict:
        data = await self.call("POST", "/v1.0/robot/groupMessages/send", {
            "robotCode": self.robot_code, "openConversationId": open_conversation_id,
            "msgKey": msg_key, "msgParam": self._param(msg_key, text, title)})
        return {"process_query_key": data.get("processQueryKey", "")}

    # -- cards --------------------------------------------------------------------------
    async def create_and_deliver(self, template_id: str, out_track_id: str,
                                 param_map: dict[str, str], to_user: str | None = None,
                                 to_group: str | None = None) -> dict:
        body: dict[str, Any] = {
            "cardTemplateId": template_id, "outTrackId": out_track_id,
            "cardData": {"cardParamMap": param_map}, "callbackType": self.callback_type,
            "userIdType": 1}
        if to_group:
            body["openSpaceId"] = f"dtv1.card//IM_GROUP.{to_group}"
            body["imGroupOpenSpaceModel"] = {"supportForward": True}
            body["imGroupOpenDeliverModel"] = {"robotCode": self.robot_code}
        elif to_user:
            body["openSpaceId"] = f"dtv1.card//IM_ROBOT.{to_user}"
            body["imRobotOpenSpaceModel"] = {"supportForward": True}
            body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT",
                                               "robotCode": self.robot_code}
        else:
            raise PermanentError("dingtalk card: no destination", code="no_dest")
        data = await self.call("POST", "/v1.0/card/instances/createAndDeliver", body)
        result = data.get("result") if isinstance(data.get("result"), dict) else {}
        failed = [r for r in (result.get("deliverResults") or [])
                  if isinstance(r, dict) and r.get("success") is False]
        if failed:
            raise PermanentError(f"dingtalk card deliver failed: "
                                 f"{str(failed[0].get('errorMsg', ''))[:120]}", code="deliver")
        return {"out_track_id": out_track_id}

    async def update_card(self, out_track_id: str, param_map: dict[str, str]) -> dict:
        await self.call("PUT", "/v1.0/card/instances", {
            "outTrackId": out_track_id, "cardData": {"cardParamMap": param_map},
            "cardUpdateOptions": {"updateCardDataByKey": True}})
        return {"out_track_id": out_track_id}

    # -- web sign-in (oapi) ---------------------------------------------------------------
    async def user_by_auth_code(self, oapi_base: str, auth_code: str) -> dict:
        """H5 免登: ``POST {oapi}/topapi/v2/user/getuserinfo?access_token=…`` ``{"code"}`` →
        ``result`` (``userid`` = the staff id robots report as ``senderStaffId``). The
        internal app's v1.0 token is accepted by oapi; 40078 = invalid or expired code."""
        url = oapi_base.rstrip("/") + "/topapi/v2/user/getuserinfo"
        for attempt in (0, 1):
            tok = await self.token()
            try:
                async with self.http.post(url, params={"access_token": tok},
                                          json={"code": auth_code}) as resp:
                    status, raw = resp.status, await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransientError(f"dingtalk getuserinfo: {exc.__class__.__name__}") from exc
            try:
                data = json.loads(raw) if raw else {}
            except ValueError:
                data = None
            if status >= 500 or not isinstance(data, dict):
                raise TransientError(f"dingtalk getuserinfo: HTTP {status}", code=status)
            code = _int(data.get("errcode"), -1)
            if code in (40014, 42001, 88) and attempt == 0:
                await self.token(force=True, stale=tok)
                continue
            if code != 0 or status >= 400:
                raise PermanentError(f"dingtalk getuserinfo: errcode {code} "
                                     f"{str(data.get('errmsg', ''))[:120]}", code=code)
            result = data.get("result")
            return result if isinstance(result, dict) else {}
        raise PermanentError("dingtalk getuserinfo: token rejected after refresh")

    # -- media --------------------------------------------------------------------------
    def _allowed_url(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host and host == self.api_host and parts.scheme in ("https", urlsplit(self.base)
                                                                .scheme):
            return True
        return parts.scheme == "https" and (host == "dingtalk.com"
                                            or host.endswith(".dingtalk.com"))

    async def download(self, download_code: str, max_bytes: int) -> bytes:
        try:
            data = await self.call("POST", "/v1.0/robot/messageFiles/download",
                                   {"downloadCode": download_code, "robotCode": self.robot_code})
        except PermanentError as exc:
            raise MediaError(f"dingtalk media: {exc}") from exc
        except (RateLimited, TransientError) as exc:
            raise MediaError(f"dingtalk media: try later ({exc})") from exc
        url = str(data.get("downloadUrl") or "")
        if not url or not self._allowed_url(url):
            raise MediaError("dingtalk media: download URL host not allowed")
        try:
            async with self.http.get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise MediaError(f"dingtalk media: HTTP {resp.status}")
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise MediaError("dingtalk media: too large")
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaError("dingtalk media: too large")
                    chunks.append(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MediaError(f"dingtalk media: {exc.__class__.__name__}") from exc
        return b"".join(chunks)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _msg(path: str, status: int, code: str, data: dict) -> str:
    return f"dingtalk {path}: HTTP {status} {code} {str(data.get('message', ''))[:120]}".strip()
