"""Signed session cookies and CSRF tokens (pure functions; no aiohttp).

A session is ``base64url(json) + "." + base64url(hmac_sha256(key, json))`` with the user id,
the time it was issued and a random nonce. The CSRF token is an HMAC of that nonce, so it is
bound to one session and needs no server-side state; forms carry it as ``_csrf`` and
``fetch`` calls as the ``X-CSRF-Token`` header. Keys are derived from the app secret with a
purpose label so a card-payload signature can never pass as a cookie and vice versa.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "fb_session"
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, f"fieldbot-web:{purpose}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class Session:
    user_id: int
    issued_at: float
    nonce: str
    via: str = "demo"  # how the user signed in: demo | wecom | dingtalk | feishu


def issue(secret: bytes, user_id: int, via: str, now: float | None = None) -> str:
    body = json.dumps({"u": user_id, "t": int(now if now is not None else time.time()),
                       "n": secrets.token_urlsafe(12), "v": via},
                      separators=(",", ":")).encode()
    sig = hmac.new(_key(secret, "session"), body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(sig)}"


def read(secret: bytes, cookie: str | None, max_age_s: float,
         now: float | None = None) -> Session | None:
    """The session in ``cookie``, or None when absent, forged, malformed or expired."""
    if not cookie or "." not in cookie or len(cookie) > 1024:
        return None
    body_b64, sig_b64 = cookie.rsplit(".", 1)
    try:
        body, sig = _unb64(body_b64), _unb64(sig_b64)
    except (ValueError, TypeError):
        return None
    want = hmac.new(_key(secret, "session"), body, hashlib.sha256).digest()
    if not hmac.compare_digest(sig, want):
        return None
    try:
        data = json.loads(body)
        s = Session(int(data["u"]), float(data["t"]), str(data["n"]), str(data.get("v", "")))
    except (ValueError, KeyError, TypeError):
        return None
    t = now if now is not None else time.time()
    if s.issued_at > t + 60 or t - s.issued_at > max_age_s:
        return None
    return s


def csrf_token(secret: bytes, nonce: str) -> str:
    return _b64(hmac.new(_key(secret, "csrf"), nonce.encode(), hashlib.sha256).digest())


def csrf_ok(secret: bytes, nonce: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(secret, nonce), str(token))
