"""Business-registry lookup (企业信用信息) for names read off a sign: an interface with a no-op
default. Providers (a local table, the 天眼查 API) live in ``integrations.registry``; a
deployment with another licensed registry API plugs in its own ``RegistryLookup``.

``lookup`` answers ``None`` both when nothing matches and when the registry cannot be asked
(an error, a timeout, an exhausted quota). A provider that can tell the two apart also has
``check(name) -> RegistryAnswer``; the photo reply uses it to say "工商信息暂不可用"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# a registration status containing one of these means the company may not trade (any more)
WARNING_STATUSES = ("注销", "吊销", "撤销", "停业")


@dataclass
class RegistryEntry:
    name: str
    credit_code: str = ""  # 统一社会信用代码 (18 characters)
    address: str = ""
    extra: dict = field(default_factory=dict)
    legal_rep: str = ""  # 法定代表人
    status: str = ""  # 登记状态 as the registry words it: 存续, 在业, 注销, 吊销, 迁出 …
    registered_capital: str = ""  # 注册资本, as text ("5000万人民币")

    @property
    def status_warning(self) -> bool:
        """True when the status says the company was deregistered, revoked or closed."""
        return any(w in (self.status or "") for w in WARNING_STATUSES)


@dataclass
class RegistryAnswer:
    """``entry`` None and ``available`` True: asked, nothing found; ``available`` False: the
    registry could not be asked."""

    entry: RegistryEntry | None
    available: bool = True


class RegistryLookup(Protocol):
    async def lookup(self, name: str) -> RegistryEntry | None: ...


class NoRegistry:
    """The default: no registry configured, nothing found."""

    async def lookup(self, name: str) -> RegistryEntry | None:
        return None
