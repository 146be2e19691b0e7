"""Signed, typed button payloads.

A token is ``base64url(json).base64url(hmac_sha256(secret, json)[:16])``: compact enough for
WeCom's 1024-byte button key and DingTalk/Feishu callback values, and verified in constant
time so a forged, edited or cross-deployment value is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from pydantic import BaseModel, Field

MAX_TOKEN_BYTES = 1000


class ForgedAction(ValueError):
    """The action payload is not one we signed."""


class Action(BaseModel):
    name: str  # e.g. "visit.save", "approval.approve"
    args: dict[str, Any] = Field(default_factory=dict)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, b"fieldbot.action\x00" + body, hashlib.sha256).digest()[:16]


def pack_action(secret: bytes, name: str, **args: Any) -> str:
    body = json.dumps({"n": name, "a": args}, separators=(",", ":"), ensure_ascii=False,
                      sort_keys=True).encode()
    token = f"{_b64(body)}.{_b64(_mac(secret, body))}"
    if len(token) > MAX_TOKEN_BYTES:
        raise ValueError(f"action payload too large ({len(token)} bytes)")
    return token


def unpack_action(secret: bytes, token: str) -> Action:
    if not isinstance(token, str) or token.count(".") != 1 or len(token) > MAX_TOKEN_BYTES:
        raise ForgedAction("malformed action payload")
    body_b64, mac_b64 = token.split(".")
    try:
        body, mac = _unb64(body_b64), _unb64(mac_b64)
    except (ValueError, TypeError) as exc:
        raise ForgedAction("malformed action payload") from exc
    if not hmac.compare_digest(mac, _mac(secret, body)):
        raise ForgedAction("bad action signature")
    try:
        data = json.loads(body)
        return Action(name=data["n"], args=data.get("a") or {})
    except (ValueError, KeyError, TypeError) as exc:
        raise ForgedAction("malformed action payload") from exc
