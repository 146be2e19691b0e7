"""DingTalk callback crypto: the robot's HTTP-mode ``sign`` and the event-subscription envelope.

Robot messages (HTTP mode) carry headers ``timestamp`` (ms) and
``sign = b64(HMAC-SHA256(key=appSecret, msg=timestamp + "\\n" + appSecret))`` (PROTOCOLS §1/§5).
The sign does **not** cover the body, so the timestamp window is what stops a captured request
from being replayed with another body; we enforce ``settings.replay_window_s`` (DingTalk itself
allows 1 h).

Event subscription (HTTP mode) uses the WeCom-style SHA1 signature + AES-256-CBC envelope. The
AES work is dingtalk-sdk's ``DingTalkCrypto`` built with ``owner_key = appKey`` (PROTOCOLS §1:
the SDK client's ``crypto`` property uses the corp id — wrong for internal-app subscriptions).
Its signature check compares with ``!=`` and its decrypt trusts its input, so the signature is
checked here in constant time and the ciphertext is pre-validated; every SDK failure becomes
``CryptoError`` (→ 400).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import struct
from typing import Any

from dingtalk.crypto import DingTalkCrypto, PrpCrypto


class CryptoError(ValueError):
    """Undecryptable or malformed: answer 400."""


class SignatureError(Exception):
    """Signature mismatch or missing: answer 401, store nothing."""


# -- robot HTTP mode ----------------------------------------------------------------------------
def robot_sign(app_secret: str, timestamp: str | int) -> str:
    msg = f"{timestamp}\n{app_secret}".encode()
    return base64.b64encode(hmac.new(app_secret.encode(), msg, hashlib.sha256).digest()).decode()


def verify_robot_sign(app_secret: str, timestamp: str, sign: str) -> bool:
    if not timestamp or not sign or not app_secret:
        return False
    expected = robot_sign(app_secret, timestamp)
    return hmac.compare_digest(expected.encode(), sign.encode())


def fresh_ms(timestamp: str, window_s: int, now_s: float) -> bool:
    """Is a millisecond timestamp within ``window_s`` of now (0 = no check)?"""
    if window_s <= 0:
        return True
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    return abs(now_s * 1000 - ts) <= window_s * 1000


# -- event subscription ------------------------------------------------------------------------
def event_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    parts = sorted(p.encode() for p in (token, timestamp, nonce, encrypt))
    return hashlib.sha1(b"".join(parts)).hexdigest()  # noqa: S324 - the protocol's


class EventCrypto:
    def __init__(self, token: str, aes_key: str, owner_key: str):
        self.token = token
        self.owner_key = owner_key
        self.sdk = DingTalkCrypto(token, aes_key, owner_key)

    def verify(self, signature: str, timestamp: str, nonce: str, encrypt: str) -> bool:
        expected = event_signature(self.token, timestamp, nonce, encrypt)
        return hmac.compare_digest(expected.encode(), (signature or "").lower().encode())

    def decrypt(self, encrypt: str) -> str:
        try:
            blob = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CryptoError("encrypt is not base64") from exc
        if not blob or len(blob) % 16:
            raise CryptoError("encrypt is not whole AES blocks")
        self._check_layout(blob)
        try:
            return PrpCrypto(self.sdk.key).decrypt(encrypt, self.owner_key)
        except Exception as exc:  # noqa: BLE001 - any SDK failure is a bad envelope
            raise CryptoError(f"decrypt failed: {exc.__class__.__name__}") from exc

    def _check_layout(self, blob: bytes) -> None:
        """Padding and length sane before the SDK slices the plaintext blindly."""
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        dec = Cipher(algorithms.AES(self.sdk.key), modes.CBC(self.sdk.key[:16])).decryptor()
        plain = dec.update(blob) + dec.finalize()
        pad = plain[-1]
        if not 1 <= pad <= 32 or plain[-pad:] != bytes([pad]) * pad:
            raise CryptoError("bad padding")
        body = plain[16:-pad]
        if len(body) < 4:
            raise CryptoError("short plaintext")
        (length,) = struct.unpack(">I", body[:4])
        if length > len(body) - 4:
            raise CryptoError("bad length")
        if body[4 + length:] != self.owner_key.encode():
            raise CryptoError("owner key mismatch")

    def open(self, signature: str, timestamp: str, nonce: str, body: bytes) -> dict[str, Any]:
        """Body ``{"encrypt": …}`` → the decrypted JSON object.

        Raises ``CryptoError`` (400) for a malformed body, ``SignatureError`` (401)."""
        try:
            outer = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CryptoError("body is not JSON") from exc
        encrypt = outer.get("encrypt") if isinstance(outer, dict) else None
        if not isinstance(encrypt, str) or not encrypt:
            raise CryptoError("no encrypt field")
        if not self.verify(signature, timestamp, nonce, encrypt):
            raise SignatureError("bad signature")
        text = self.decrypt(encrypt)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CryptoError("plaintext is not JSON") from exc
        if not isinstance(data, dict):
            raise CryptoError("plaintext is not an object")
        return data

    def seal(self, plaintext: str = "success") -> dict[str, str]:
        """DingTalk's expected answer: ``{msg_signature, timeStamp, nonce, encrypt}``."""
        return dict(self.sdk.encrypt_message(plaintext))
