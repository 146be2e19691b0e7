"""The Feishu app-bot adapter: webhook route (or the 长连接) + API client behind the core's
protocol.

``FIELDBOT_FEISHU_MODE=webhook`` (default) mounts ``POST /webhooks/feishu``; ``ws`` mounts no
route and holds a long connection instead (``integrations.feishu.ws``), started by the app
after ``start(http)``. Both hand events to the same ingress, and card taps answer with the
handler's toast either way (``inline_toast``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bot.event import MediaRef, OutMessage, Target
from bot.platform import MediaError, PermanentError, Route
from cards import Card
from cards.render_feishu import render_feishu
from cards.render_text import render_text
from integrations.feishu.answers import TapAnswers
from integrations.feishu.client import FeishuClient
from integrations.feishu.crypto import FeishuCrypto
from integrations.feishu.webhook import PATH, TOAST_WAIT_S, FeishuWebhook
from integrations.feishu.ws import FeishuWs

log = logging.getLogger(__name__)

PER_DEST = (5, 1.0)  # 5 QPS to one user, 5 QPS per group (PROTOCOLS §5)
PATCH_MAX_AGE_S = 14 * 86400 - 3600  # Feishu PATCHes messages ≤ 14 days old (an hour spare)
CARD_MAX_BYTES = 30 * 1024  # Feishu refuses a bigger card with 230025 (PROTOCOLS §9.4)


def _markdown_post(text: str) -> dict[str, Any]:
    return {"zh_cn": {"title": "", "content": [[{"tag": "md", "text": text}]]}}


class Adapter:
    platform = "feishu"
    inline_toast = True  # card taps answer with a toast in the 3-second reply / ack

    def __init__(self, settings, ingress):
        self.settings = settings
        self.app_id = settings.platform_value("feishu", "app_id")
        self.crypto = FeishuCrypto(settings.platform_value("feishu", "encrypt_key"),
                                   settings.platform_value("feishu", "verification_token"))
        self.client = FeishuClient(settings.feishu_api_base, self.app_id,
                                   settings.platform_value("feishu", "app_secret"))
        self.answers = TapAnswers()  # card updates wait for their tap's answer
        self.webhook = FeishuWebhook(self.crypto, ingress, self.app_id,
                                     settings.replay_window_s, answers=self.answers)
        self.mode = settings.mode("feishu")
        self.transport: FeishuWs | None = None
        if self.mode == "ws":
            self.transport = FeishuWs(api_base=settings.feishu_api_base, app_id=self.app_id,
                                      app_secret=settings.platform_value("feishu", "app_secret"),
                                      ingress=ingress, ping_s=settings.longconn_ping_s,
                                      toast_wait_s=TOAST_WAIT_S, answers=self.answers)

    def routes(self) -> list[Route]:
        if self.mode == "ws":
            return []  # events arrive over the long connection: no public URL
        return [("POST", PATH, self.webhook.handle)]

    async def start(self, http: Any) -> None:
        self.client.http = http
        if self.transport is not None:
            self.transport.http = http

    async def close(self) -> None:
        self.client.http = None

    def rate_limit(self, target: Target) -> tuple[int, float]:
        return PER_DEST

    @staticmethod
    def _receiver(target: Target) -> tuple[str, str]:
        # a tap carries the chat the card lives in: answer there (a p2p chat id works too)
        if target.extra.get("chat_id"):
            return "chat_id", str(target.extra["chat_id"])
        return ("chat_id", target.id) if target.kind == "chat" else ("open_id", target.id)

    async def deliver(self, target: Target, message: OutMessage, idem_key: str,
                      resend: bool = False) -> dict:
        if message.kind == "update_card":
            return await self._update(message, target, idem_key)
        id_type, receive_id = self._receiver(target)
        if message.kind == "text":
            return await self.client.send(id_type, receive_id, "text", {"text": message.text},
                                          idem_key)
        if message.kind == "markdown":
            return await self.client.send(id_type, receive_id, "post",
                                          _markdown_post(message.text), idem_key)
        if message.kind == "card" and message.card is not None:
            model = Card.model_validate(message.card)
            card = render_feishu(model)
            size = len(json.dumps(card, ensure_ascii=False).encode())
            if size > CARD_MAX_BYTES:  # Feishu would refuse it (230025) and drop the message
                log.warning("feishu: card %r is %d bytes (> 30 KB): sent as text",
                            model.title[:40], size)
                text = render_text(model) + "\n（卡片内容过多，已转为文字；请在小程序中处理）"
                return await self.client.send(id_type, receive_id, "text", {"text": text},
                                              idem_key)
            return await self.client.send(id_type, receive_id, "interactive", card, idem_key)
        raise PermanentError(f"feishu cannot deliver {message.kind!r}")

    async def _update(self, message: OutMessage, target: Target | None = None,
                      idem_key: str = "") -> dict:
        if message.card is None:
            raise PermanentError("update_card without a card")
        card = render_feishu(Card.model_validate(message.card))
        token = str(message.card_ref.get("token") or "")
        message_id = str(message.card_ref.get("open_message_id")
                         or message.card_ref.get("message_id") or "")
        if token:
            tap_at = message.card_ref.get("tap_at")
            await self.answers.wait(token, tap_at if isinstance(tap_at, int | float) else None)
            try:
                return await self.client.update_card(token, card)
            except PermanentError:
                if not message_id:
                    raise
                log.info("feishu delayed-update token refused; patching the message instead")
        if not message_id:
            raise PermanentError("update_card needs a token or a message id")
        sent_at = message.card_ref.get("sent_at")
        if (target is not None and isinstance(sent_at, int | float)
                and time.time() - sent_at > PATCH_MAX_AGE_S):
            # Feishu PATCHes only messages of the last 14 days: the new state as a new card
            log.info("feishu: card %s is older than 14 days: sent anew", message_id[:20])
            return await self.deliver(target, OutMessage(kind="card", card=message.card),
                                      f"{idem_key}:anew")
        return await self.client.patch_message(message_id, card)

    def web_signin(self, redirect_uri: str, state: str) -> dict:
        """Where the bare workbench URL sends the browser: Feishu's authorize page, which
        comes back to ``redirect_uri`` with ``?code=`` and ``state``."""
        from urllib.parse import urlencode

        base = self.settings.feishu_api_base.rstrip("/")
        return {"redirect": base + "/open-apis/authen/v1/authorize?" + urlencode(
            {"app_id": self.app_id, "redirect_uri": redirect_uri, "state": state})}

    async def web_user_id(self, code: str) -> str:
        """The workbench sign-in (H5): code → the user's ``open_id`` (``Event.sender``)."""
        info = await self.client.user_by_code(code)
        open_id = str(info.get("open_id") or "")
        if not open_id:
            raise PermanentError("feishu sign-in: no open_id for this code", code="no_user")
        return open_id

    async def download_media(self, media: MediaRef, max_bytes: int) -> bytes:
        if not media.message_id:
            raise MediaError("feishu media needs the message id")
        kind = "image" if media.kind == "image" else "file"
        return await self.client.download(media.message_id, media.key, kind, max_bytes)
