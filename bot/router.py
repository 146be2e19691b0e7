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

# the help card's groups, in its order
GROUPS = ("拜访", "审批", "提醒", "其他")


@dataclass(frozen=True)
class CommandHelp:
    """One line of the ``help`` card: the words that start the command, what it does (short,
    "中文 / English") and one example of it as a user would type it."""

    words: tuple[str, ...]
    summary: str
    example: str
    group: str


@dataclass
class Router:
    name: str
    group: str = "其他"  # where this router's commands appear in the help card
    commands: dict[str, Handler] = field(default_factory=dict)
    actions: dict[str, Handler] = field(default_factory=dict)
    msg_types: dict[str, Handler] = field(default_factory=dict)
    fallbacks: list[Handler] = field(default_factory=list)
    help: list[CommandHelp] = field(default_factory=list)

    def command(self, *words: str, help: str, example: str = ""):  # noqa: A002
        """Register a command. ``help`` ("中文 / English", short) and ``example`` (defaults
        to the first word) feed the generated help card: no command without them."""
        if " / " not in help:
            raise ValueError(f"command {words[0]!r}: help needs '中文 / English'")

        def deco(fn: Handler) -> Handler:
            for w in words:
                self.commands[w.lower()] = fn
            self.help.append(CommandHelp(tuple(words), help, example or words[0], self.group))
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
