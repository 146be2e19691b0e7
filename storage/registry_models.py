"""The local business registry (工商信息, issue 16 §4): ``registry_entries``, one row per
company, keyed by its 统一社会信用代码 (``credit_code``, unique), filled by a CSV import
(``integrations.registry.importer``) and read by ``integrations.registry.local``.

``normalized_name`` is the name as ``bot.matching.normalize`` keys it (exact lookups);
``core_name`` the name without region and legal suffix, ``core_head`` its first two
characters: fuzzy lookups fetch the rows sharing the head (one indexed query) and rank them.
The values are computed by the writer (storage imports nothing above it)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from storage.models import ts


class RegistryEntryRow(SQLModel, table=True):
    __tablename__ = "registry_entries"
    id: int | None = Field(default=None, primary_key=True)
    name: str
    normalized_name: str = Field(index=True)
    core_name: str = ""
    core_head: str = Field(default="", index=True)
    credit_code: str = Field(unique=True, index=True)
    legal_rep: str = ""
    address: str = ""
    status: str = ""
    registered_capital: str = ""
    updated_at: datetime = ts()
