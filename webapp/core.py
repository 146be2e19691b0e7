"""What every page gets: the web context (settings, engine, secret, platform adapters, the
outbox's wake-up) on the sub-application, and the signed-in user on the request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from config import Settings
from storage.models import User


@dataclass
class WebCtx:
    settings: Settings
    engine: Any  # AsyncEngine
    secret: bytes
    adapters: dict[str, Any] = field(default_factory=dict)  # platform → PlatformAdapter
    wake: Callable[[], None] = lambda: None  # nudge the outbox after writing rows
    services: dict[str, Any] = field(default_factory=dict)  # e.g. "media": MediaService

    def session(self) -> AsyncSession:
        return AsyncSession(self.engine, expire_on_commit=False)


WEB = web.AppKey("web", WebCtx)
_RK = getattr(web, "RequestKey", None)  # aiohttp ≥ 3.13 types request storage keys
# request[USER_KEY]: the signed-in storage.models.User (absent when anonymous);
# request[SESSION_KEY]: its webapp.session.Session
USER_KEY: Any = _RK("fb_user", User) if _RK else "fb_user"
SESSION_KEY: Any = _RK("fb_session", object) if _RK else "fb_session"


def web_ctx(request: web.Request) -> WebCtx:
    return request.config_dict[WEB]


def current_user(request: web.Request) -> User | None:
    return request.get(USER_KEY)


ROLE_RANK = {"rep": 0, "finance": 1, "manager": 2, "vp": 3, "admin": 4}
MANAGERS = ("manager", "vp", "admin")
APPROVERS = ("manager", "vp", "finance", "admin")

