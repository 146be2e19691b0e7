"""What the core needs from a platform integration, and the errors it may raise.

An adapter is built by ``bot.app.create_app`` as ``Adapter(settings, ingress)`` (module
``integrations.<platform>.adapter``), gets the shared aiohttp client session in ``start(http)``,
registers its webhook routes, turns callbacks into ``Event``s
handed to ``Ingress.submit``, and delivers ``OutMessage``s for the outbox.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bot.event import MediaRef, OutMessage, Target


class DeliveryError(Exception):
    """Base of delivery failures; ``retry_after`` (s) hints the backoff."""

    transient = True

    def __init__(self, message: str, retry_after: float | None = None, code: Any = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code


class RateLimited(DeliveryError):
    """The platform said slow down.

    WeCom 45009/45033, DingTalk 90018/Throttling, Feishu 99991400/11232."""


class TransientError(DeliveryError):
    """Network error, 5xx, a system-busy code: try again later."""


class NotReady(TransientError):
    """The way out is not up yet (a long connection reconnecting, or held by another
    instance): retried after ``retry_after`` without using up the message's attempts."""


class PermanentError(DeliveryError):
    """Bad request, unknown user, no permission: retrying will not help."""

    transient = False


class ConfigurationError(PermanentError):
    """The platform refuses because of how the app is set up (a missing permission scope, an
    untrusted server IP, a used-up quota): retrying soon will not help, an admin must act. The
    outbox keeps the message (retried every ``retry_after`` s without using up its attempts)
    and ``/healthz`` shows the error under ``config_errors`` until a send succeeds again."""

    def __init__(self, message: str, retry_after: float | None = 300.0, code: Any = None,
                 hint: str = ""):
        super().__init__(message, retry_after=retry_after, code=code)
        self.hint = hint


class MediaError(Exception):
    """Media could not be fetched (expired key, too large, not found)."""


Route = tuple[str, str, Callable[..., Awaitable[Any]]]  # (method, path, aiohttp handler)


class PlatformAdapter(Protocol):
    platform: str
    app_id: str

    def routes(self) -> list[Route]: ...

    async def start(self, http: Any) -> None: ...

    async def close(self) -> None: ...

    async def deliver(self, target: Target, message: OutMessage, idem_key: str,
                      resend: bool = False) -> dict:
        """Send or update; return what the platform answered that later updates need
        (message id, response_code, outTrackId). Raise a ``DeliveryError`` on failure.
        ``resend``: this row may already have reached the platform (see the outbox)."""
        ...

    async def download_media(self, media: MediaRef, max_bytes: int) -> bytes: ...

    def rate_limit(self, target: Target) -> tuple[int, float]:
        """(messages, per seconds) allowed to this destination by the platform's docs."""
        ...
