"""DingTalk app robot as a ``PlatformAdapter``: webhooks in, robot/card APIs out.

Robot callbacks are committed and answered ``200 {}``; every reply goes through the outbox and
the robot API (not the ``sessionWebhook``: it expires after ~90 min and an outbox retry may come
later). Cards are card-platform instances (``createAndDeliver`` with a deterministic
``outTrackId``, so the tap's ``card_ref`` names them and updates replace them in place).
DingTalk has no inline toast for these callbacks: a handler's toast is not shown; its card update
or reply is.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from bot.dispatcher import Ingress
from bot.event import MediaRef, OutMessage, Target
from bot.platform import PermanentError
from cards import Card
from cards.render_dingtalk import DEFAULT_TEMPLATE_ID, render_card
from config import ConfigError, Settings
from integrations.dingtalk.client import DingTalkClient
from integrations.dingtalk.crypto import EventCrypto
from integrations.dingtalk.stream import CARD_TOPIC, PING_S, DingTalkStream
from integrations.dingtalk.webhook import DingTalkWebhook
from storage.db import is_sqlite
from storage.sign_ledger import bind as bind_sign

PER_DESTINATION = (20, 60.0)  # PROTOCOLS §5: robots 20 msgs/min (over that: throttled 10 min)
_TRACK_ID_OK = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def out_track_id_for(card: Card, idem_key: str) -> str:
    """``card.card_id`` if usable, else derived from the outbox row's idempotency key, so a
    resend of the same row targets the same card instance."""
    if card.card_id and _TRACK_ID_OK.match(card.card_id):
        return card.card_id
    seed = card.card_id or idem_key
    return "fb-" + hashlib.sha256(seed.encode()).hexdigest()[:32]


class Adapter:
    platform = "dingtalk"

    def __init__(self, settings: Settings, ingress: Ingress):
        v = lambda name: settings.platform_value("dingtalk", name)  # noqa: E731
        self.settings = settings
        self.app_id = v("app_key")
        self._secret = v("app_secret")
        self.robot_code = v("robot_code")
        self.api_base = settings.dingtalk_api_base
        self.oapi_base = str(getattr(settings, "dingtalk_oapi_base", "")
                             or "https://oapi.dingtalk.com")
        self.template_id = str(getattr(settings, "dingtalk_card_template_id", "")
                               or DEFAULT_TEMPLATE_ID)
        self.mode = settings.mode("dingtalk")
        self.webhook: DingTalkWebhook | None = None
        self.transport: DingTalkStream | None = None
        ping = settings.longconn_ping_s or PING_S
        if self.mode == "stream":  # issue 14: robot messages and card taps over Stream
            self.transport = DingTalkStream(ingress, self.api_base, self.app_id, self._secret,
                                            ping_interval=ping)
        else:
            # Event subscription owner key = appKey (internal app), not the corp id (§1).
            self.crypto = EventCrypto(v("token"), v("aes_key"), self.app_id)
            self.webhook = DingTalkWebhook(self.crypto, ingress, self.app_id, self._secret,
                                           settings.replay_window_s,
                                           shared_signs=_shared_signs(ingress))
            taps = str(settings.dingtalk_card_callbacks or "stream").strip().lower()
            if taps not in ("stream", "http"):
                raise ConfigError("FIELDBOT_DINGTALK_CARD_CALLBACKS must be stream or http,"
                                  f" not {taps!r}")
            if taps == "stream":  # card taps only: robot messages keep coming by HTTP
                self.transport = DingTalkStream(ingress, self.api_base, self.app_id,
                                                self._secret, topics=(CARD_TOPIC,),
                                                ping_interval=ping)
        self.client: DingTalkClient | None = None

    def routes(self):
        return self.webhook.routes() if self.webhook is not None else []

    async def start(self, http: Any) -> None:
        self.client = DingTalkClient(http, self.api_base, self.app_id, self._secret,
                                     self.robot_code)
        if self.transport is not None:
            self.transport.http = http
            self.client.callback_type = "STREAM"

    async def close(self) -> None:
        self.client = None

    def rate_limit(self, target: Target) -> tuple[int, float]:
        return PER_DESTINATION

    async def download_media(self, media: MediaRef, max_bytes: int) -> bytes:
        assert self.client is not None, "adapter not started"
        return await self.client.download(media.key, max_bytes)

    def web_signin(self, redirect_uri: str, state: str) -> dict:
        """DingTalk H5 免登 has no redirect: a page whose script asks the DingTalk container
        for an ``authCode`` (``requestAuthCode``) and comes back with ``?authCode=``."""
        return {"page": "signin_dingtalk.html",
                "values": {"corp_id": self.settings.dingtalk_corp_id,
                           "client_id": self.app_id}}

    async def web_user_id(self, code: str) -> str:
        """The workbench sign-in (H5 免登): authCode → the staff id (``Event.sender``)."""
        assert self.client is not None, "adapter not started"
        result = await self.client.user_by_auth_code(self.oapi_base, code)
        userid = str(result.get("userid") or "")
        if not userid:
            raise PermanentError("dingtalk sign-in: no userid for this code", code="no_user")
        return userid

    async def deliver(self, target: Target, message: OutMessage, idem_key: str,
                      resend: bool = False) -> dict:
        client = self.client
        assert client is not None, "adapter not started"
        if message.kind == "update_card":
            ref = str(message.card_ref.get("out_track_id") or "")
            if not ref:
                raise PermanentError("dingtalk: card update without an outTrackId",
                                     code="no_ref")
            card = Card.model_validate(message.card or {})
            return await client.update_card(ref, render_card(card))
        if message.kind == "card":
            card = Card.model_validate(message.card or {})
            track = out_track_id_for(card, idem_key)
            if target.kind == "chat":
                return await client.create_and_deliver(self.template_id, track,
                                                       render_card(card), to_group=target.id)
            return await client.create_and_deliver(self.template_id, track, render_card(card),
                                                   to_user=target.id)
        msg_key = "sampleMarkdown" if message.kind == "markdown" else "sampleText"
        if target.kind == "chat":
            return await client.send_to_group(target.id, msg_key, message.text)
        return await client.send_to_users([target.id], msg_key, message.text)


def _shared_signs(ingress):
    """With PostgreSQL (several instances may share the URL), the robot's (timestamp, sign)
    pairs are bound in the database too; one SQLite process needs only its memory."""
    inbox = getattr(ingress, "inbox", None)
    if inbox is None or is_sqlite(inbox.url):
        return None
    engine = inbox.engine

    def bind(pair: str, digest: str) -> bool:
        return bind_sign(engine, pair, digest, datetime.now(UTC))

    return bind
