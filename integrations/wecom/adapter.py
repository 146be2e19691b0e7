"""WeCom self-built app as a ``PlatformAdapter``: webhook in, client out.

Card taps are committed like any event and acknowledged with an empty 200; WeCom has no toast,
so the handler's answer arrives as a card update (``update_template_card`` with the tap's
single-use ``response_code``) or a message. A card without buttons cannot be a
``button_interaction`` card and a ``text_notice`` needs a link, so it is sent as text.
"""

from __future__ import annotations

from typing import Any

from bot.dispatcher import Ingress
from bot.event import MediaRef, OutMessage, Target
from bot.platform import PermanentError
from cards import Card
from cards.render_text import render_text
from cards.render_wecom import render_card, render_update, task_id_for
from config import Settings
from integrations.wecom.client import WeComClient
from integrations.wecom.crypto import WeComCrypto
from integrations.wecom.webhook import WeComWebhook

PER_MEMBER = (30, 60.0)  # PROTOCOLS §5: ≤ 30 messages/min to one member


class Adapter:
    platform = "wecom"

    def __init__(self, settings: Settings, ingress: Ingress):
        v = lambda name: settings.platform_value("wecom", name)  # noqa: E731
        self.settings = settings
        self.app_id = v("corp_id")
        self.agent_id = v("agent_id")
        self._secret = v("secret")
        self.api_base = settings.wecom_api_base
        self.crypto = WeComCrypto(v("token"), v("aes_key"), self.app_id)
        self.webhook = WeComWebhook(self.crypto, ingress, self.app_id,
                                    settings.replay_window_s)
        self.client: WeComClient | None = None

    def routes(self):
        return self.webhook.routes()

    async def start(self, http: Any) -> None:
        self.client = WeComClient(http, self.api_base, self.app_id, self._secret, self.agent_id)

    async def close(self) -> None:
        self.client = None

    def rate_limit(self, target: Target) -> tuple[int, float]:
        return PER_MEMBER

    async def download_media(self, media: MediaRef, max_bytes: int) -> bytes:
        assert self.client is not None, "adapter not started"
        return await self.client.get_media(media.key, max_bytes)

    async def deliver(self, target: Target, message: OutMessage, idem_key: str,
                      resend: bool = False) -> dict:
        client = self.client
        assert client is not None, "adapter not started"
        if message.kind == "update_card":
            return await self._update(target, message, idem_key)
        if message.kind == "card":
            card = Card.model_validate(message.card or {})
            tpl = render_card(card, task_id_for(idem_key))
            if target.kind == "user" and tpl.get("button_list"):
                result = await client.send_card(target.id, tpl, resend)
                return {**result, "task_id": tpl["task_id"]}
            msgtype, content = "text", {"content": render_text(card)}
        elif message.kind == "markdown":
            msgtype, content = "markdown", {"content": message.text}
        else:
            msgtype, content = "text", {"content": message.text}
        if target.kind == "chat":
            return await client.send_chat(target.id, msgtype, content)
        return await client.send(target.id, msgtype, content, resend)

    def web_signin(self, redirect_uri: str, state: str) -> dict:
        """Where the bare workbench URL sends the browser: WeCom's OAuth2 page, which comes
        back to ``redirect_uri`` with ``?code=`` (``snsapi_base``: no consent screen)."""
        from urllib.parse import urlencode

        return {"redirect": "https://open.weixin.qq.com/connect/oauth2/authorize?" + urlencode(
            {"appid": self.app_id, "redirect_uri": redirect_uri, "response_type": "code",
             "scope": "snsapi_base", "state": state, "agentid": self.agent_id})
            + "#wechat_redirect"}

    async def web_user_id(self, code: str) -> str:
        """The workbench sign-in: OAuth2 code → the member's userid (what ``Event.sender`` is).
        A non-member (``openid`` only) is refused."""
        assert self.client is not None, "adapter not started"
        data = await self.client.oauth_user(code)
        userid = str(data.get("userid") or data.get("UserId") or "")
        if not userid:
            raise PermanentError("wecom sign-in: not a member of this corp", code="not_member")
        return userid

    async def _update(self, target: Target, message: OutMessage, idem_key: str) -> dict:
        assert self.client is not None
        code = str(message.card_ref.get("response_code") or "")
        if not code or target.kind != "user":
            raise PermanentError("wecom: card update without a response_code", code="no_ref")
        card = Card.model_validate(message.card or {})
        task_id = str(message.card_ref.get("task_id") or "") or task_id_for(idem_key)
        if not card.card_id:
            card = card.model_copy(update={"card_id": task_id})
        return await self.client.update_card([target.id], code, render_update(card, task_id))
