"""The local registry provider: the ``registry_entries`` table (``storage.registry_models``),
filled by the CSV import (``integrations.registry.importer``).

Lookup is one indexed query: rows whose ``normalized_name`` equals the name's, or whose
``core_head`` (first two characters of the name without region and legal suffix) equals the
name's; at most ``CANDIDATES`` rows come back and are ranked here: the exact name first, then
the same core, then the closest core by ``difflib`` ratio (at least ``MIN_RATIO``). Names are
keyed with ``bot.matching``'s normalisation, so 上海浦江机电设备有限公司, "浦江机电设备" and
"上海 浦江机电设备（有限公司）" find the same row."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from difflib import SequenceMatcher

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.matching import _strip_legal, _strip_region, normalize
from integrations.media.registry import RegistryAnswer, RegistryEntry
from sales.credit_code import clean
from storage.registry_models import RegistryEntryRow

log = logging.getLogger(__name__)

CANDIDATES = 50
MIN_RATIO = 0.6


@dataclass(frozen=True)
class NameKeys:
    normalized: str
    core: str
    head: str


def name_keys(name: str) -> NameKeys:
    """The keys the table stores for ``name`` and a lookup searches with."""
    full = normalize(name)
    core = _strip_region(_strip_legal(full)) or full
    return NameKeys(full, core, core[:2])


def to_entry(row: RegistryEntryRow) -> RegistryEntry:
    return RegistryEntry(name=row.name, credit_code=row.credit_code, address=row.address,
                         legal_rep=row.legal_rep, status=row.status,
                         registered_capital=row.registered_capital,
                         extra={"source": "local"})


def _score(keys: NameKeys, row: RegistryEntryRow) -> float:
    if row.normalized_name == keys.normalized:
        return 2.0
    if row.core_name == keys.core:
        return 1.5
    return SequenceMatcher(None, keys.core, row.core_name).ratio()


async def find(session: AsyncSession, name: str) -> RegistryEntryRow | None:
    """The best row for ``name``: exact normalized name, else the best fuzzy candidate."""
    keys = name_keys(name)
    if not keys.normalized:
        return None
    conds = [RegistryEntryRow.normalized_name == keys.normalized]
    if len(keys.head) == 2:
        conds.append(RegistryEntryRow.core_head == keys.head)
    rows = (await session.execute(
        select(RegistryEntryRow).where(or_(*conds)).limit(CANDIDATES))).scalars().all()
    best = max(rows, key=lambda r: (_score(keys, r), -len(r.core_name), r.credit_code),
               default=None)
    if best is None or _score(keys, best) < MIN_RATIO:
        return None
    return best


async def upsert(session: AsyncSession, *, name: str, credit_code: str, legal_rep: str = "",
                 address: str = "", status: str = "", registered_capital: str = "",
                 now: datetime | None = None) -> bool:
    """Insert or update the row for ``credit_code``; True when it was new. The caller
    commits."""
    code = clean(credit_code)
    keys = name_keys(name)
    row = (await session.execute(select(RegistryEntryRow).where(
        RegistryEntryRow.credit_code == code))).scalars().first()
    created = row is None
    if row is None:
        row = RegistryEntryRow(name=name, normalized_name=keys.normalized, credit_code=code)
        session.add(row)
    row.name = name.strip()
    row.normalized_name, row.core_name, row.core_head = keys.normalized, keys.core, keys.head
    row.legal_rep, row.address, row.status = legal_rep, address, status
    row.registered_capital = registered_capital
    row.updated_at = now or datetime.now(UTC)
    await session.flush()
    return created


class LocalRegistry:
    """``RegistryLookup`` over ``registry_entries``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def check(self, name: str) -> RegistryAnswer:
        try:
            async with AsyncSession(self.engine, expire_on_commit=False) as session:
                row = await find(session, name)
        except Exception:  # noqa: BLE001 - an optional lookup never breaks the photo reply
            log.warning("local business registry lookup failed", exc_info=True)
            return RegistryAnswer(None, available=False)
        return RegistryAnswer(to_entry(row) if row is not None else None)

    async def lookup(self, name: str) -> RegistryEntry | None:
        return (await self.check(name)).entry
