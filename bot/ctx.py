"""What a handler gets: the event, a DB session inside the event's transaction, and ways to
answer. Everything a handler sends is written to the outbox in the same transaction that marks
the event done, so a crash never loses a reply nor sends one for an event that rolled back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.event import Event, OutMessage, Target, Toast, utcnow
from cards import Action, Card, ForgedAction, pack_action, unpack_action
from config import Settings
from storage.models import AuditLog, Identity, Job, OutboxMessage, User

UPDATE_AFTER_TAP_S = 0.3
# built once: every event looks its sender up (building the statement cost more than running it)
_USER_BY_IDENTITY = (select(User).join(Identity, Identity.user_id == User.id)
                     .where(Identity.platform == bindparam("p"),
                            Identity.app_id == bindparam("a"),
                            Identity.external_id == bindparam("x")))


class Ctx:
    def __init__(self, event: Event, session: AsyncSession, settings: Settings, secret: bytes,
                 key_prefix: str, clock=utcnow):
        self.event = event
        self.session = session
        self.settings = settings
        self.secret = secret
        self.key_prefix = key_prefix
        self.clock = clock
        self.user: User | None = None
        self.toast_reply: Toast | None = None
        self.outbox: list[OutboxMessage] = []
        self._n = 0
        self._action: Action | None = None

    # -- who ------------------------------------------------------------------------------
    async def load_user(self) -> User | None:
        ev = self.event
        params = {"p": ev.platform, "a": ev.app_id, "x": ev.sender}
        self.user = (await AsyncSession.execute(self.session, _USER_BY_IDENTITY, params)
                     ).scalars().first()
        return self.user

    @property
    def action(self) -> Action:
        """The verified action of a card tap; raises ``ForgedAction`` if not ours."""
        if self._action is None:
            if self.event.action is None:
                raise ForgedAction("not a card action")
            self._action = unpack_action(self.secret, self.event.action.value)
        return self._action

    def sign(self, name: str, **args: Any) -> str:
        return pack_action(self.secret, name, **args)

    # -- answers --------------------------------------------------------------------------
    def _queue(self, target: Target, msg: OutMessage, delay: float = 0) -> OutboxMessage:
        self._n += 1
        row = OutboxMessage(idem_key=f"{self.key_prefix}:{self._n}", platform=target.platform,
                            target=target.model_dump(mode="json"),
                            message=msg.model_dump(mode="json"),
                            next_at=self.clock() + timedelta(seconds=delay))
        self.outbox.append(row)
        return row

    async def reply(self, content: str | Card, markdown: bool = False) -> None:
        await self.send(self.event.reply_target(), content, markdown=markdown)

    async def send(self, target: Target, content: str | Card, markdown: bool = False) -> None:
        if isinstance(content, Card):
            self._queue(target, OutMessage(kind="card", card=content.model_dump(mode="json")))
        else:
            self._queue(target, OutMessage(kind="markdown" if markdown else "text",
                                           text=content))

    async def send_card(self, target: Target, card: Card) -> None:
        await self.send(target, card)

    async def update_card(self, card: Card, card_ref: dict | None = None,
                          target: Target | None = None) -> None:
        """Replace the card that was tapped (or the one ``card_ref`` names, sent to
        ``target``: a card the bot sent someone else earlier)."""
        ref = card_ref if card_ref is not None else (
            self.event.action.card_ref if self.event.action else {})
        target = target or self.event.reply_target()
        # Feishu wants the delayed update *after* the tap's HTTP answer: hold it back briefly
        delay = UPDATE_AFTER_TAP_S if self.event.kind == "card_action" else 0
        self._queue(target, OutMessage(kind="update_card", card=card.model_dump(mode="json"),
                                       card_ref=ref), delay=delay)

    def toast(self, text: str, kind: str = "info") -> None:
        """An inline answer to a tap, shown where the platform can (Feishu toast)."""
        self.toast_reply = Toast(kind=kind, text=text)  # type: ignore[arg-type]

    async def defer(self, job: str, run_at: datetime | None = None, **args: Any) -> None:
        """Queue slow work durably; it runs in a worker after this event commits."""
        self._n += 1
        self.session.add(Job(idem_key=f"{self.key_prefix}:job:{self._n}", name=job,
                             args={"event": self.event.model_dump(mode="json"), **args},
                             owner=f"{self.event.platform}:{self.event.sender}"[:200],
                             next_at=run_at or self.clock()))

    def audit(self, action: str, entity: str = "", entity_id: Any = "", **detail: Any) -> None:
        ev = self.event
        self.session.add(AuditLog(actor_id=self.user.id if self.user else None,
                                  actor_ref=f"{ev.platform}:{ev.sender}", platform=ev.platform,
                                  action=action, entity=entity, entity_id=str(entity_id),
                                  detail=detail, at=self.clock()))
