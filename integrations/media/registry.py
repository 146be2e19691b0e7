"""Business-registry lookup (企业信用信息) for names read off a sign: an interface with a no-op
default. A deployment with a licensed registry API plugs in its own ``RegistryLookup``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class RegistryEntry:
    name: str
    credit_code: str = ""
    address: str = ""
    extra: dict = field(default_factory=dict)


class RegistryLookup(Protocol):
    async def lookup(self, name: str) -> RegistryEntry | None: ...


class NoRegistry:
    """The default: no registry configured, nothing found."""

    async def lookup(self, name: str) -> RegistryEntry | None:
        return None
