"""AI bot media: download by URL, then decrypt with the message's own ``aeskey``.

As the official Node SDK's ``decryptFile`` does: key = base64(aeskey) (32 bytes, AES-256),
IV = its first 16 bytes, CBC, PKCS#7 padding to a multiple of **32** bytes (pad 1..32; a
decryptor that strips 16-byte padding fails on real files). The URL lives ~5 minutes, so the
media job should run soon after the message. Only https URLs are fetched — plain http only when
the bot itself talks ``ws://`` (a local simulator).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.platform import MediaError

PAD_BLOCK = 32


def _key(aeskey: str) -> bytes:
    raw = (aeskey or "").strip()
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=False)
    except (binascii.Error, ValueError) as exc:
        raise MediaError("wecom_aibot media: aeskey is not base64") from exc
    if len(key) != 32:
        raise MediaError(f"wecom_aibot media: aeskey is {len(key)} bytes, not 32")
    return key


def decrypt(data: bytes, aeskey: str) -> bytes:
    key = _key(aeskey)
    if not data or len(data) % 16:
        raise MediaError("wecom_aibot media: ciphertext is not whole AES blocks")
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = dec.update(data) + dec.finalize()
    pad = plain[-1]
    if not 1 <= pad <= PAD_BLOCK or pad > len(plain) or plain[-pad:] != bytes([pad]) * pad:
        raise MediaError("wecom_aibot media: bad padding (wrong aeskey or corrupt file)")
    return plain[:-pad]


def encrypt(data: bytes, aeskey: str) -> bytes:
    """The inverse (what WeCom does; the simulator uses it)."""
    key = _key(aeskey)
    pad = PAD_BLOCK - len(data) % PAD_BLOCK
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return enc.update(data + bytes([pad]) * pad) + enc.finalize()


async def download(http: aiohttp.ClientSession, url: str, aeskey: str, max_bytes: int,
                   allow_http: bool = False) -> bytes:
    scheme = urlsplit(url).scheme.lower()
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise MediaError(f"wecom_aibot media: refusing a {scheme or 'relative'} URL")
    limit = max_bytes + PAD_BLOCK  # the padding is not the file's
    try:
        async with http.get(url, allow_redirects=False) as resp:
            if resp.status != 200:
                raise MediaError(f"wecom_aibot media: HTTP {resp.status} (link expired?)")
            if resp.content_length is not None and resp.content_length > limit:
                raise MediaError("wecom_aibot media: too large")
            chunks, size = [], 0
            async for chunk in resp.content.iter_chunked(65536):
                size += len(chunk)
                if size > limit:
                    raise MediaError("wecom_aibot media: too large")
                chunks.append(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MediaError(f"wecom_aibot media: {exc.__class__.__name__}") from exc
    plain = decrypt(b"".join(chunks), aeskey)
    if len(plain) > max_bytes:
        raise MediaError("wecom_aibot media: too large")
    return plain
