"""Shared machinery of the fake platforms: call recording and documented rate limits.

Each platform module (``simulator/wecom.py``, ``dingtalk.py``, ``feishu.py``) defines a class
with ``add_routes(app: web.Application)`` for its fake API, and methods that build and POST
wire-accurate signed/encrypted callbacks into the bot. ``simulator.server.Simulator`` mounts
all three on one loopback port.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Call:
    platform: str
    api: str  # a short name: "send", "update_card", "token", "media", "history"
    path: str
    body: Any
    at: float = field(default_factory=time.time)
    result: Any = None
    dest: str = ""  # destination key (user/chat) for rate accounting


class Recorder:
    """Every API call the bot makes, in order; tests assert on these."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def add(self, call: Call) -> Call:
        self.calls.append(call)
        return call

    def of(self, platform: str | None = None, api: str | None = None) -> list[Call]:
        return [c for c in self.calls
                if (platform is None or c.platform == platform) and (api is None or c.api == api)]

    def clear(self) -> None:
        self.calls.clear()


class SlidingLimit:
    """At most ``n`` events per ``per`` seconds per key (what the platform enforces)."""

    def __init__(self, n: int, per: float, clock=time.monotonic):
        self.n, self.per, self.clock = n, per, clock
        self._hits: dict[str, list[float]] = {}

    def allow(self, key: str) -> bool:
        now = self.clock()
        hits = [t for t in self._hits.get(key, []) if now - t < self.per]
        if len(hits) >= self.n:
            self._hits[key] = hits
            return False
        hits.append(now)
        self._hits[key] = hits
        return True


@dataclass
class Faults:
    """Failures a test can inject: the next N sends answer rate-limited / 5xx / token-invalid."""

    rate_limited: int = 0
    server_error: int = 0
    token_invalid: int = 0

    def take(self, name: str) -> bool:
        left = getattr(self, name)
        if left > 0:
            setattr(self, name, left - 1)
            return True
        return False
