"""The 天眼查 (Tianyancha) open API provider: "企业基本信息" (ic/baseinfo/normal).

Wire format (open.tianyancha.com, 企业基本信息 / baseinfo normal)::

    GET {base}/services/open/ic/baseinfo/normal?keyword=<company name>
    Authorization: <token>
    → {"error_code": 0, "reason": "ok",
       "result": {"name", "creditCode", "legalPersonName", "regStatus", "regCapital",
                  "regLocation", ...}}

``error_code`` other than 0 means no result: 300000 (经查无结果 / no data) is a clean "not
found"; everything else (300003/300004 quota or rate exhausted, 300006 token invalid, …) and
any HTTP error, bad JSON or timeout means the registry is unavailable. The field names are
confirmed by public client code (``error_code``, ``reason``, ``result.name``,
``legalPersonName``, ``regStatus``, ``creditCode``); the exact meaning of each non-zero code
is an assumption taken from the published error table as summarised in issue 16 — only 0 and
300000 are relied on, every other code is treated alike.

Each lookup opens its own short-lived ``aiohttp`` session with a total timeout of
``timeout_s`` (default 3 s): a lookup happens once per photo, and a slow registry must not
hold the reply. The token is sent only in the header and never logged."""

from __future__ import annotations

import logging

import aiohttp

from integrations.media.registry import RegistryAnswer, RegistryEntry

log = logging.getLogger(__name__)

DEFAULT_BASE = "https://open.api.tianyancha.com"
PATH = "/services/open/ic/baseinfo/normal"
NO_DATA = 300000
QUOTA_EXHAUSTED = (300003, 300004)
TOKEN_INVALID = 300006


def to_entry(result: dict) -> RegistryEntry | None:
    name = str(result.get("name") or "").strip()
    if not name:
        return None
    keep = ("regNumber", "companyOrgType", "estiblishTime", "industry", "base", "id")
    return RegistryEntry(
        name=name, credit_code=str(result.get("creditCode") or ""),
        address=str(result.get("regLocation") or ""),
        legal_rep=str(result.get("legalPersonName") or ""),
        status=str(result.get("regStatus") or ""),
        registered_capital=str(result.get("regCapital") or ""),
        extra={"source": "tianyancha",
               **{k: result[k] for k in keep if result.get(k) not in (None, "")}})


class TianyanchaRegistry:
    """``RegistryLookup`` over the 天眼查 open API."""

    def __init__(self, token: str, base_url: str = DEFAULT_BASE, timeout_s: float = 3.0
                 ) -> None:
        self._token = token
        self.base_url = (base_url or DEFAULT_BASE).rstrip("/")
        self.timeout_s = timeout_s

    def __repr__(self) -> str:  # the token stays out of reprs and logs
        return f"TianyanchaRegistry(base_url={self.base_url!r})"

    async def check(self, name: str) -> RegistryAnswer:
        keyword = (name or "").strip()
        if not keyword:
            return RegistryAnswer(None)
        if not self._token:
            log.warning("tianyancha registry: no token configured")
            return RegistryAnswer(None, available=False)
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            async with aiohttp.ClientSession(timeout=timeout) as http, http.get(
                    self.base_url + PATH, params={"keyword": keyword[:100]},
                    headers={"Authorization": self._token}) as resp:
                if resp.status != 200:
                    log.warning("tianyancha registry: HTTP %s", resp.status)
                    return RegistryAnswer(None, available=False)
                body = await resp.json(content_type=None)
        except TimeoutError:
            log.warning("tianyancha registry: timed out after %.1f s", self.timeout_s)
            return RegistryAnswer(None, available=False)
        except (aiohttp.ClientError, ValueError) as exc:
            log.warning("tianyancha registry: request failed: %s", type(exc).__name__)
            return RegistryAnswer(None, available=False)
        if not isinstance(body, dict):
            log.warning("tianyancha registry: unexpected answer")
            return RegistryAnswer(None, available=False)
        code = body.get("error_code")
        if code == NO_DATA:
            return RegistryAnswer(None)
        if code != 0:
            what = ("quota exhausted" if code in QUOTA_EXHAUSTED else
                    "token invalid" if code == TOKEN_INVALID else "error")
            log.warning("tianyancha registry: %s (error_code %s, %s)", what, code,
                        str(body.get("reason") or "")[:80])
            return RegistryAnswer(None, available=False)
        result = body.get("result")
        return RegistryAnswer(to_entry(result) if isinstance(result, dict) else None)

    async def lookup(self, name: str) -> RegistryEntry | None:
        return (await self.check(name)).entry
