"""Routers: one per handler module, each registering what it answers.

Matching order inside the dispatcher: card actions by name, then commands (the first word of a
text message, case-insensitive, Chinese or English), then message types, then fallbacks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.ctx import Ctx

Handler = Callable[["Ctx"], Awaitable[None]]


@dataclass
class Router:
    name: str
    commands: dict[str, Handler] = field(default_factory=dict)
    actions: dict[str, Handler] = field(default_factory=dict)
    msg_types: dict[str, Handler] = field(default_factory=dict)
    fallbacks: list[Handler] = field(default_factory=list)
    help: list[tuple[str, str]] = field(default_factory=list)

    def command(self, *words: str, help: str = ""):  # noqa: A002 - reads well at call sites
        def deco(fn: Handler) -> Handler:
            for w in words:
                self.commands[w.lower()] = fn
            if help:
                self.help.append((" / ".join(words), help))
            return fn

        return deco

    def action(self, *names: str):
        def deco(fn: Handler) -> Handler:
            for n in names:
                self.actions[n] = fn
            return fn

        return deco

    def message(self, *msg_types: str):
        def deco(fn: Handler) -> Handler:
            for t in msg_types:
                self.msg_types[t] = fn
            return fn

        return deco

    def fallback(self):
        def deco(fn: Handler) -> Handler:
            self.fallbacks.append(fn)
            return fn

        return deco
