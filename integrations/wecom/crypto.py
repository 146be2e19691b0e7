"""WeCom callback crypto: signature check, AES decrypt, safe XML.

The AES work is wechatpy's ``WeChatCrypto`` (the official scheme, see PROTOCOLS §1/§8). Its own
signature check compares with ``!=`` and its decrypt trusts its input, so we verify the SHA1
signature ourselves in constant time first and pre-validate the ciphertext (strict base64, whole
blocks) before handing it over; every SDK exception becomes ``CryptoError`` (→ 400).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import time

from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto

from integrations.wecom.safexml import XMLRefused, parse_flat


class CryptoError(ValueError):
    """Undecryptable or malformed: answer 400."""


class SignatureError(Exception):
    """Signature mismatch: answer 401, store nothing."""


def parse_xml(data: bytes | str) -> dict[str, str]:
    """Flat ``{tag: text}`` of a WeCom XML document; DTDs/entities are refused outright
    (defusedxml's policy, see ``integrations.wecom.safexml``)."""
    try:
        return parse_flat(data)
    except XMLRefused as exc:
        raise CryptoError(f"bad xml: {exc}") from exc


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    parts = sorted([token, timestamp, nonce, encrypt])
    return hashlib.sha1("".join(parts).encode()).hexdigest()  # noqa: S324 - the protocol's


class WeComCrypto:
    def __init__(self, token: str, aes_key: str, corp_id: str):
        self.token = token
        self.corp_id = corp_id
        self.sdk = WeChatCrypto(token, aes_key, corp_id)
        self._prp = PrpCrypto(self.sdk.key)  # stateless: a new decryptor per message

    # -- verify -------------------------------------------------------------------------
    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> bool:
        expected = signature(self.token, timestamp, nonce, encrypt)
        return hmac.compare_digest(expected.encode(), (msg_signature or "").lower().encode())

    # -- decrypt ------------------------------------------------------------------------
    def decrypt(self, encrypt: str) -> str:
        """Ciphertext (already authenticated by the signature) → plaintext message."""
        try:
            raw = base64.b64decode(encrypt, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CryptoError("bad base64") from exc
        if not raw or len(raw) % 32:
            raise CryptoError("bad ciphertext length")
        try:
            return self._prp.decrypt(encrypt, self.corp_id)
        except Exception as exc:  # noqa: BLE001 - wechatpy raises anything on garbage
            raise CryptoError(f"undecryptable: {exc.__class__.__name__}") from exc

    def check_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        if not self.verify(msg_signature, timestamp, nonce, echostr):
            raise SignatureError("bad signature")
        return self.decrypt(echostr)

    def open_envelope(self, body: bytes, msg_signature: str, timestamp: str,
                      nonce: str) -> dict[str, str]:
        """POST body → the inner message as a flat dict. Raises CryptoError / SignatureError."""
        outer = parse_xml(body)
        encrypt = outer.get("Encrypt")
        if not isinstance(encrypt, str) or not encrypt:
            raise CryptoError("no Encrypt element")
        if not self.verify(msg_signature, timestamp, nonce, encrypt):
            raise SignatureError("bad signature")
        return parse_xml(self.decrypt(encrypt).encode())

    # -- encrypt (passive replies, the simulator) ----------------------------------------
    def seal(self, plaintext: str, timestamp: str | None = None,
             nonce: str | None = None) -> dict[str, str]:
        """Encrypt and sign with the SDK; returns Encrypt, MsgSignature, TimeStamp, Nonce."""
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or str(struct.unpack(">I", os.urandom(4))[0])
        reply = parse_xml(self.sdk.encrypt_message(plaintext, nonce, timestamp).encode())
        return {k: reply[k] for k in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce")}
