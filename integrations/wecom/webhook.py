"""``/webhooks/wecom``: GET answers the URL check, POST takes messages and events.

Order on POST: read the body (so an oversize body is a 413, never a 500) → timestamp window
(401) → outer XML with defusedxml's refusals (DTD/entities/garbage → 400) → constant-time
signature (401, nothing stored) → decrypt (400) → inner XML (400) → parse (unknown kinds:
200 + a log line) → commit through ``Ingress.submit`` (503 if the inbox is down) → empty 200
("ack, no reply").
"""

from __future__ import annotations

import logging
import time
from urllib.parse import unquote

from aiohttp import web

from bot.dispatcher import Ingress
from bot.inbox import InboxUnavailable
from integrations.wecom.crypto import CryptoError, SignatureError, WeComCrypto
from integrations.wecom.parse import parse

log = logging.getLogger(__name__)

PATH = "/webhooks/wecom"


def _raw_query(request: web.Request) -> dict[str, str]:
    """The query decoded without turning '+' into a space (PROTOCOLS §1 pitfall)."""
    out: dict[str, str] = {}
    for part in request.rel_url.raw_query_string.split("&"):
        name, _, value = part.partition("=")
        out.setdefault(unquote(name), unquote(value))
    return out


class WeComWebhook:
    def __init__(self, crypto: WeComCrypto, ingress: Ingress, corp_id: str,
                 replay_window_s: int, clock=time.time):
        self.crypto = crypto
        self.ingress = ingress
        self.corp_id = corp_id
        self.replay_window_s = replay_window_s
        self.clock = clock

    def routes(self):
        return [("GET", PATH, self.url_check), ("POST", PATH, self.callback)]

    def _fresh(self, timestamp: str) -> bool:
        if self.replay_window_s <= 0:
            return True
        try:
            ts = int(timestamp)
        except (TypeError, ValueError):
            return False
        return abs(self.clock() - ts) <= self.replay_window_s

    async def url_check(self, request: web.Request) -> web.Response:
        q = request.query
        sig, ts, nonce, echostr = (q.get("msg_signature", ""), q.get("timestamp", ""),
                                   q.get("nonce", ""), q.get("echostr", ""))
        if not (sig and ts and nonce and echostr):
            return web.Response(status=400, text="bad request")
        if not self._fresh(ts):
            return web.Response(status=401, text="unauthorized")
        try:
            try:
                plain = self.crypto.check_url(sig, ts, nonce, echostr)
            except SignatureError:
                raw = _raw_query(request).get("echostr", "")
                if raw == echostr:
                    raise
                plain = self.crypto.check_url(sig, ts, nonce, raw)
        except SignatureError:
            log.warning("wecom url check: bad signature")
            return web.Response(status=401, text="unauthorized")
        except CryptoError as exc:
            log.warning("wecom url check: %s", exc)
            return web.Response(status=400, text="bad request")
        return web.Response(body=plain.encode(), content_type="text/plain")

    async def callback(self, request: web.Request) -> web.Response:
        body = await request.read()  # raises 413 past client_max_size
        q = request.query
        sig, ts, nonce = q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", "")
        if not (sig and ts and nonce):
            return web.Response(status=401, text="unauthorized")
        if not self._fresh(ts):
            log.warning("wecom callback: timestamp outside the replay window")
            return web.Response(status=401, text="unauthorized")
        try:
            raw = self.crypto.open_envelope(body, sig, ts, nonce)
        except SignatureError:
            log.warning("wecom callback: bad signature")
            return web.Response(status=401, text="unauthorized")
        except CryptoError as exc:
            log.warning("wecom callback: %s", exc)
            return web.Response(status=400, text="bad request")
        try:
            event = parse(raw, self.corp_id)
        except (ValueError, TypeError) as exc:
            log.warning("wecom callback: malformed message: %s", exc)
            return web.Response(status=400, text="bad request")
        if event is None:
            return web.Response(status=200, text="")
        try:
            new, _toast = await self.ingress.submit(event, toast_wait=0)
        except InboxUnavailable:
            log.error("wecom callback: inbox unavailable, answering 503")
            return web.Response(status=503, text="unavailable")
        if not new:
            log.info("wecom callback: duplicate %s acknowledged", event.event_id[:80])
        return web.Response(status=200, text="")
