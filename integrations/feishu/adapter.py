"""The Feishu app-bot adapter: webhook route + API client behind the core's protocol."""

from __future__ import annotations

import logging
from typing import Any

from bot.event import MediaRef, OutMessage, Target
from bot.platform import MediaError, PermanentError, Route
from cards import Card
from cards.render_feishu import render_feishu
from integrations.feishu.client import FeishuClient
from integrations.feishu.crypto import FeishuCrypto
from integrations.feishu.webhook import PATH, FeishuWebhook

log = logging.getLogger(__name__)

PER_DEST = (5, 1.0)  # 5 QPS to one user, 5 QPS per group (PROTOCOLS §5)


def _markdown_post(text: str) -> dict[str, Any]:
    return {"zh_cn": {"title": "", "content": [[{"tag": "md", "text": text}]]}}


class Adapter:
    platform = "feishu"
    inline_toast = True  # card taps answer with a toast in the 3-second HTTP reply

    def __init__(self, settings, ingress):
        self.settings = settings
        self.app_id = settings.platform_value("feishu", "app_id")
        self.crypto = FeishuCrypto(settings.platform_value("feishu", "encrypt_key"),
                                   settings.platform_value("feishu", "verification_token"))
        self.client = FeishuClient(settings.feishu_api_base, self.app_id,
                                   settings.platform_value("feishu", "app_secret"))
        self.webhook = FeishuWebhook(self.crypto, ingress, self.app_id,
                                     settings.replay_window_s)

    def routes(self) -> list[Route]:
        return [("POST", PATH, self.webhook.handle)]

    async def start(self, http: Any) -> None:
        self.client.http = http

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
            return await self._update(message)
        id_type, receive_id = self._receiver(target)
        if message.kind == "text":
            return await self.client.send(id_type, receive_id, "text", {"text": message.text},
                                          idem_key)
        if message.kind == "markdown":
            return await self.client.send(id_type, receive_id, "post",
                                          _markdown_post(message.text), idem_key)
        if message.kind == "card" and message.card is not None:
            card = render_feishu(Card.model_validate(message.card))
            return await self.client.send(id_type, receive_id, "interactive", card, idem_key)
        raise PermanentError(f"feishu cannot deliver {message.kind!r}")

    async def _update(self, message: OutMessage) -> dict:
        if message.card is None:
            raise PermanentError("update_card without a card")
        card = render_feishu(Card.model_validate(message.card))
        token = str(message.card_ref.get("token") or "")
        message_id = str(message.card_ref.get("open_message_id")
                         or message.card_ref.get("message_id") or "")
        if token:
            try:
                return await self.client.update_card(token, card)
            except PermanentError:
                if not message_id:
                    raise
                log.info("feishu delayed-update token refused; patching the message instead")
        if not message_id:
            raise PermanentError("update_card needs a token or a message id")
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
