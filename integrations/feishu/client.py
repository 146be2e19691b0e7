"""Feishu open API over aiohttp: tenant token cache, send, card update, media download.

Wire format is lark-oapi's (same paths, bodies, Bearer tenant token); we talk aiohttp directly
because the SDK's blocking transport would stall the event loop. Errors map to the core's
delivery errors: HTTP 429 or a frequency-limit code → ``RateLimited`` (with the
``x-ogw-ratelimit-reset`` hint), 5xx/network → ``TransientError``, any other non-zero code →
``PermanentError``. A token-invalid code refreshes the token and retries once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

import aiohttp

from bot.platform import MediaError, PermanentError, RateLimited, TransientError

log = logging.getLogger(__name__)

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"  # noqa: S105 - a URL path
APP_TOKEN_PATH = "/open-apis/auth/v3/app_access_token/internal"  # noqa: S105 - a URL path
RATE_CODES = {99991400, 11232, 230020}
TOKEN_INVALID_CODES = {99991663, 99991661, 99991668}
TOKEN_MARGIN_S = 300
UUID_MAX = 50


def feishu_uuid(idem_key: str) -> str:
    """Feishu's send dedupe key must be ≤ 50 chars: keep short keys, hash long ones."""
    if len(idem_key) <= UUID_MAX:
        return idem_key
    return "fb-" + hashlib.sha256(idem_key.encode()).hexdigest()[:40]


class _TokenInvalid(Exception):
    pass


class FeishuClient:
    def __init__(self, api_base: str, app_id: str, app_secret: str,
                 http: aiohttp.ClientSession | None = None, clock=time.monotonic,
                 timeout_s: float = 10.0):
        self.base = api_base.rstrip("/")
        self.app_id = app_id
        self._secret = app_secret
        self.http = http
        self.clock = clock
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._token: str = ""
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.token_fetches = 0
        self._app_token: str = ""
        self._app_expires_at = 0.0

    # -- token --------------------------------------------------------------------------
    async def tenant_token(self, force: bool = False) -> str:
        if not force and self._token and self.clock() < self._expires_at:
            return self._token
        stale = self._token
        async with self._lock:
            # someone else refreshed while we waited
            if self._token and self._token != stale and self.clock() < self._expires_at:
                return self._token
            if not force and self._token and self.clock() < self._expires_at:
                return self._token
            status, data, _h = await self._raw_json("POST", TOKEN_PATH, auth=None, json_body={
                "app_id": self.app_id, "app_secret": self._secret})
            try:
                self._raise_for(status, data, _h, what="tenant token")
            except _TokenInvalid as exc:
                raise PermanentError("feishu tenant token: credentials refused") from exc
            token = data.get("tenant_access_token")
            if not isinstance(token, str) or not token:
                raise TransientError("tenant token missing in answer")
            expire = float(data.get("expire") or 0)
            self._token = token
            self._expires_at = self.clock() + max(0.0, expire - TOKEN_MARGIN_S)
            self.token_fetches += 1
            return token

    async def app_token(self, force: bool = False) -> str:
        """The ``app_access_token`` the user-auth (OIDC) endpoints require, cached like the
        tenant token."""
        async with self._lock:
            if not force and self._app_token and self.clock() < self._app_expires_at:
                return self._app_token
            status, data, headers = await self._raw_json("POST", APP_TOKEN_PATH, auth=None,
                                                         json_body={"app_id": self.app_id,
                                                                    "app_secret": self._secret})
            try:
                self._raise_for(status, data, headers, what="app token")
            except _TokenInvalid as exc:
                raise PermanentError("feishu app token: credentials refused") from exc
            token = data.get("app_access_token")
            if not isinstance(token, str) or not token:
                raise TransientError("app token missing in answer")
            self._app_token = token
            self._app_expires_at = self.clock() + max(0.0, float(data.get("expire") or 0)
                                                      - TOKEN_MARGIN_S)
            return token

    # -- transport ----------------------------------------------------------------------
    def _session(self) -> aiohttp.ClientSession:
        if self.http is None:
            raise TransientError("feishu client not started")
        return self.http

    async def _raw_json(self, method: str, path: str, auth: str | None,
                        json_body: Any = None, params: dict | None = None):
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if auth:
            headers["Authorization"] = f"Bearer {auth}"
        try:
            async with self._session().request(method, self.base + path, json=json_body,
                                               params=params, headers=headers,
                                               timeout=self.timeout) as resp:
                raw = await resp.read()
                try:
                    data = json.loads(raw) if raw else {}
                except ValueError:
                    data = {}
                return resp.status, data if isinstance(data, dict) else {}, resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"feishu {path}: {exc.__class__.__name__}") from exc

    @staticmethod
    def _raise_for(status: int, data: dict, headers, what: str) -> None:
        code = data.get("code")
        if status == 429 or code in RATE_CODES:
            raise RateLimited(f"feishu {what}: rate limited ({code})",
                              retry_after=_reset(headers), code=code)
        if status >= 500:
            raise TransientError(f"feishu {what}: HTTP {status}", code=code)
        if code in TOKEN_INVALID_CODES:
            raise _TokenInvalid(code)
        if code != 0 or status >= 400:
            raise PermanentError(f"feishu {what}: code {code} HTTP {status}: "
                                 f"{str(data.get('msg', ''))[:200]}", code=code)

    async def call(self, method: str, path: str, json_body: Any = None,
                   params: dict | None = None, what: str = "") -> dict:
        """An authenticated JSON call; refresh the token once if Feishu says it is invalid."""
        for attempt in (0, 1):
            token = await self.tenant_token(force=attempt == 1)
            status, data, headers = await self._raw_json(method, path, token, json_body, params)
            try:
                self._raise_for(status, data, headers, what or path)
            except _TokenInvalid:
                log.info("feishu tenant token rejected; refreshing")
                continue
            return data.get("data") or {}
        raise TransientError(f"feishu {what or path}: token still invalid after refresh")

    # -- API ----------------------------------------------------------------------------
    async def send(self, receive_id_type: str, receive_id: str, msg_type: str,
                   content: dict, idem_key: str = "") -> dict:
        body = {"receive_id": receive_id, "msg_type": msg_type,
                "content": json.dumps(content, ensure_ascii=False)}
        if idem_key:
            body["uuid"] = feishu_uuid(idem_key)
        data = await self.call("POST", "/open-apis/im/v1/messages", body,
                               {"receive_id_type": receive_id_type}, what="send")
        try:  # create_time (ms) tells a later update whether PATCH still works (14 days)
            sent_at = int(data.get("create_time") or 0) / 1000 or time.time()
        except (TypeError, ValueError):
            sent_at = time.time()
        return {"message_id": data.get("message_id", ""), "sent_at": int(sent_at)}

    async def update_card(self, token: str, card: dict) -> dict:
        """Delayed update after a tap (token: 30 min, usable twice)."""
        await self.call("POST", "/open-apis/interactive/v1/card/update",
                        {"token": token, "card": card}, what="card update")
        return {"updated": "token"}

    async def patch_message(self, message_id: str, card: dict) -> dict:
        await self.call("PATCH", f"/open-apis/im/v1/messages/{message_id}",
                        {"content": json.dumps(card, ensure_ascii=False)}, what="patch")
        return {"updated": "patch", "message_id": message_id}

    async def user_by_code(self, code: str) -> dict:
        """H5 sign-in: ``code`` → a user access token (``authen/v1/oidc/access_token`` with the
        app token) → ``authen/v1/user_info`` (``open_id``, ``union_id``, ``user_id``, ``name``).
        An invalid or used code is a non-zero ``code`` → ``PermanentError``."""
        body = {"grant_type": "authorization_code", "code": code}
        for attempt in (0, 1):
            app = await self.app_token(force=attempt == 1)
            status, data, headers = await self._raw_json(
                "POST", "/open-apis/authen/v1/oidc/access_token", app, body)
            try:
                self._raise_for(status, data, headers, what="oidc access_token")
            except _TokenInvalid:
                continue
            break
        else:
            raise PermanentError("feishu oidc: app token still invalid after refresh")
        user_token = str((data.get("data") or {}).get("access_token") or "")
        if not user_token:
            raise PermanentError("feishu oidc: no user access token in answer")
        status, data, headers = await self._raw_json("GET", "/open-apis/authen/v1/user_info",
                                                     user_token)
        try:
            self._raise_for(status, data, headers, what="user_info")
        except _TokenInvalid as exc:
            raise PermanentError("feishu user_info: user token refused") from exc
        info = data.get("data")
        return info if isinstance(info, dict) else {}

    async def download(self, message_id: str, key: str, kind: str, max_bytes: int) -> bytes:
        """GET a message resource (``kind`` image|file; audio is file), at most ``max_bytes``."""
        path = f"/open-apis/im/v1/messages/{message_id}/resources/{key}"
        for attempt in (0, 1):
            token = await self.tenant_token(force=attempt == 1)
            try:
                async with self._session().get(
                        self.base + path, params={"type": kind}, timeout=self.timeout,
                        headers={"Authorization": f"Bearer {token}"}) as resp:
                    ctype = resp.headers.get("Content-Type", "")
                    if resp.status != 200 or ctype.startswith("application/json"):
                        raw = await resp.content.read(65536)
                        try:
                            data = json.loads(raw)
                        except ValueError:
                            data = {}
                        if not isinstance(data, dict):
                            data = {}
                        if data.get("code") in TOKEN_INVALID_CODES and attempt == 0:
                            continue
                        raise MediaError(f"feishu media: HTTP {resp.status} "
                                         f"code {data.get('code')}")
                    length = resp.content_length
                    if length is not None and length > max_bytes:
                        raise MediaError(f"feishu media too large ({length} bytes)")
                    chunks, total = [], 0
                    async for chunk in resp.content.iter_chunked(65536):
                        total += len(chunk)
                        if total > max_bytes:
                            raise MediaError("feishu media too large")
                        chunks.append(chunk)
                    return b"".join(chunks)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise MediaError(f"feishu media: {exc.__class__.__name__}") from exc
        raise MediaError("feishu media: token still invalid after refresh")


def _reset(headers) -> float:
    try:
        return max(0.2, float(headers.get("x-ogw-ratelimit-reset", "")))
    except (TypeError, ValueError, AttributeError):
        return 1.0
