"""Feishu event crypto: header signature, replay window, verification token, AES decrypt.

Decryption follows lark-oapi's ``AESCipher`` (key = SHA256(encrypt_key), as the SDK's;
IV = the blob's first 16 bytes; AES-256-CBC; PKCS#7 checked as strictly as the SDK does;
PROTOCOLS §1/§8) but runs on ``cryptography`` with the key schedule built once: the SDK's
pycryptodome ``AES.new`` per message was a sixth of a Feishu acknowledgement.
We do not route requests through lark's ``EventDispatcherHandler``: it answers 500 on any
failure, compares secrets with ``!=``, checks no timestamp and does no dedupe. Everything
here is pure and compares in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16


class CryptoError(ValueError):
    """Undecryptable or malformed: answer 400."""


class SignatureError(Exception):
    """Bad or missing signature, stale timestamp, wrong token: answer 401, store nothing."""


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """``sha256_hex((ts + nonce + encrypt_key).encode() + raw_body)``: plain SHA-256, no HMAC."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class FeishuCrypto:
    def __init__(self, encrypt_key: str, verification_token: str):
        self.encrypt_key = encrypt_key
        self.verification_token = verification_token
        # the key schedule of lark-oapi's ``AESCipher``: SHA-256 of the key's UTF-8 bytes (the
        # SDK is a test oracle only: importing it costs ~4.7 s at every start)
        self._aes = (algorithms.AES(hashlib.sha256(encrypt_key.encode()).digest())
                     if encrypt_key else None)

    # -- verify -------------------------------------------------------------------------
    def verify_signature(self, timestamp: str, nonce: str, sig: str, body: bytes) -> None:
        if not (timestamp and nonce and sig):
            raise SignatureError("missing signature headers")
        expected = signature(timestamp, nonce, self.encrypt_key, body)
        if not _eq(expected, sig.strip().lower()):
            raise SignatureError("bad signature")

    @staticmethod
    def check_timestamp(timestamp: str, window_s: int, now: float | None = None) -> None:
        """Reject |now − ts| > window (seconds); ``window_s`` 0 turns the check off."""
        if window_s <= 0:
            return
        try:
            ts = int(timestamp)
        except (TypeError, ValueError) as exc:
            raise SignatureError("bad timestamp") from exc
        if abs((time.time() if now is None else now) - ts) > window_s:
            raise SignatureError("timestamp outside the replay window")

    def verify_token(self, token: object) -> None:
        if not isinstance(token, str) or not _eq(token, self.verification_token):
            raise SignatureError("bad verification token")

    # -- decrypt ------------------------------------------------------------------------
    def decrypt(self, encrypted: object) -> str:
        if self._aes is None:
            raise CryptoError("encrypted body but no encrypt key configured")
        if not isinstance(encrypted, str) or not encrypted:
            raise CryptoError("encrypt is not a string")
        try:
            blob = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CryptoError("bad base64") from exc
        if len(blob) < 2 * BLOCK or len(blob) % BLOCK:
            raise CryptoError("bad ciphertext length")
        dec = Cipher(self._aes, modes.CBC(blob[:BLOCK])).decryptor()
        plain = dec.update(blob[BLOCK:]) + dec.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise CryptoError("undecryptable: bad padding")
        try:
            return plain[:-pad].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CryptoError("undecryptable") from exc
