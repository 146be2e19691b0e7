"""DingTalk HTTP endpoints.

``POST /webhooks/dingtalk`` — robot messages (HTTP mode). Order: read the body (oversize → 413,
never 500) → headers ``timestamp``/``sign`` present and timestamp inside the replay window
(401) → constant-time ``sign`` (401, nothing stored) → JSON (400) → parse (missing fields 400;
unknown ``msgtype`` 200 + log) → ``Ingress.submit`` (503 if the inbox is down) → ``200 {}``.
The reply never rides in the HTTP answer: it goes through the outbox and the robot API.

``POST /webhooks/dingtalk/events`` — event subscription (encrypted, HTTP mode). Query
``msg_signature|signature``, ``timeStamp|timestamp`` (ms), ``nonce``; body ``{"encrypt":…}``.
``check_url`` / ``check_create_suite_url`` and every event we do not handle are answered with
the encrypted ``"success"`` (else DingTalk retries and, for the URL check, refuses the URL).
Card-platform callbacks (``outTrackId`` + ``content``) become ``card_action`` events.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict

from aiohttp import web

from bot.dispatcher import Ingress
from bot.inbox import InboxUnavailable
from integrations.dingtalk.crypto import (
    CryptoError,
    EventCrypto,
    SignatureError,
    fresh_ms,
    verify_robot_sign,
)
from integrations.dingtalk.parse import is_card_callback, parse_card_callback, parse_robot

log = logging.getLogger(__name__)

ROBOT_PATH = "/webhooks/dingtalk"
EVENTS_PATH = "/webhooks/dingtalk/events"
URL_CHECKS = {"check_url", "check_create_suite_url", "check_update_suite_url"}


class SignLedger:
    """(timestamp, sign) → the digest of the first body that came with it, kept for the replay
    window (after it the timestamp check refuses the pair anyway). Bounded: past ``cap`` pairs
    the oldest go first. Per process; several instances behind one URL each keep their own."""

    def __init__(self, window_s: int, cap: int = 200_000, shared=None):
        self.window_s = max(window_s, 1)
        self.cap = cap
        self._seen: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        # ``shared(pair, digest hex) -> bool`` (blocking): the database's ledger that several
        # instances behind one URL share (storage/sign_ledger.py), or None for one process
        self.shared = shared

    async def bind(self, timestamp: str, sign: str, body: bytes, now: float) -> bool:
        """True when the pair is new (now bound to ``body``) or already bound to this body."""
        while self._seen:
            key, (at, _digest) = next(iter(self._seen.items()))
            if now - at <= 2 * self.window_s and len(self._seen) < self.cap:
                break
            del self._seen[key]
        pair = hashlib.sha256(f"{timestamp}\n{sign}".encode()).hexdigest()
        digest = hashlib.sha256(body).digest()
        got = self._seen.get(pair)
        if got is not None:
            return hmac.compare_digest(got[1], digest)
        if self.shared is not None and not await asyncio.to_thread(self.shared, pair,
                                                                   digest.hex()):
            return False  # another instance saw this pair with another body
        self._seen[pair] = (now, digest)
        return True


def _unauthorized() -> web.Response:
    return web.json_response({"error": "unauthorized"}, status=401)


def _bad() -> web.Response:
    return web.json_response({"error": "bad request"}, status=400)


class DingTalkWebhook:
    def __init__(self, crypto: EventCrypto, ingress: Ingress, app_id: str, app_secret: str,
                 replay_window_s: int, clock=time.time, shared_signs=None):
        self.crypto = crypto
        self.ingress = ingress
        self.app_id = app_id
        self._secret = app_secret
        self.replay_window_s = replay_window_s
        self.clock = clock
        self.signs = SignLedger(replay_window_s, shared=shared_signs)

    def routes(self):
        return [("POST", ROBOT_PATH, self.robot), ("POST", EVENTS_PATH, self.events)]

    async def _submit(self, event) -> web.Response | None:
        try:
            new, _toast = await self.ingress.submit(event, toast_wait=0)
        except InboxUnavailable:
            log.error("dingtalk: inbox unavailable, answering 503")
            return web.json_response({"error": "unavailable"}, status=503)
        if not new:
            log.info("dingtalk: duplicate %s acknowledged", event.event_id[:80])
        return None

    # -- robot messages -------------------------------------------------------------------
    async def robot(self, request: web.Request) -> web.Response:
        ts = request.headers.get("timestamp", "")
        sign = request.headers.get("sign", "")
        if not ts or not sign:
            return _unauthorized()
        if not fresh_ms(ts, self.replay_window_s, self.clock()):
            log.warning("dingtalk robot: timestamp outside the replay window")
            return _unauthorized()
        if not verify_robot_sign(self._secret, ts, sign):
            log.warning("dingtalk robot: bad sign")
            return _unauthorized()
        body = await request.read()  # only now, and 413 past client_max_size
        try:
            raw = json.loads(body)
            event = parse_robot(raw, self.app_id)
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            log.warning("dingtalk robot: malformed message: %s", exc.__class__.__name__)
            return _bad()
        if event is None:
            return web.json_response({})
        # The sign covers only the timestamp, not the body: a captured (timestamp, sign) pair
        # could carry any body (another sender) inside the window. Each pair is bound to the
        # first body seen with it; the same pair with another body is refused. (The same pair
        # with the same body is a duplicate delivery: acknowledged, deduped on msgId.)
        if not await self.signs.bind(ts, sign, body, self.clock()):
            log.warning("dingtalk robot: a (timestamp, sign) pair reused with another body")
            return _unauthorized()
        if (failed := await self._submit(event)) is not None:
            return failed
        return web.json_response({})

    # -- event subscription ---------------------------------------------------------------
    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        sig = q.get("msg_signature") or q.get("signature") or ""
        ts = q.get("timeStamp") or q.get("timestamp") or ""
        nonce = q.get("nonce") or ""
        if not (sig and ts and nonce):
            return _unauthorized()
        if not fresh_ms(ts, self.replay_window_s, self.clock()):
            log.warning("dingtalk events: timestamp outside the replay window")
            return _unauthorized()
        body = await request.read()  # the signature covers it: read once the query passed
        try:
            data = self.crypto.open(sig, ts, nonce, body)
        except SignatureError:
            log.warning("dingtalk events: bad signature")
            return _unauthorized()
        except CryptoError as exc:
            log.warning("dingtalk events: %s", exc)
            return _bad()
        event_type = str(data.get("EventType") or "")
        if event_type in URL_CHECKS:
            log.info("dingtalk events: %s answered", event_type)
            return web.json_response(self.crypto.seal("success"))
        if is_card_callback(data):
            try:
                event = parse_card_callback(data, self.app_id)
            except (ValueError, TypeError) as exc:
                log.warning("dingtalk card callback: malformed: %s", exc)
                return _bad()
            if (failed := await self._submit(event)) is not None:
                return failed
            return web.json_response(self.crypto.seal("success"))
        log.info("dingtalk events: unhandled EventType %r acknowledged", event_type[:60])
        return web.json_response(self.crypto.seal("success"))
