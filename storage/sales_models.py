"""Tables added by targets and the management measures (issue 17).

- ``deal_history``: one row per change of a deal's stage, amount, owner or expected close
  date (``field`` names which; ``old``/``new`` hold the values as text), with who made it and
  from where (``source``: chat, card, web, api, import, erp, migration; system for the
  safety-net hook). A new deal gets one
  ``stage`` row with ``old`` NULL. Written only through ``sales.stage_history``.
- ``sales_targets``: a target per (scope, scope id, period kind, period start, metric), one row
  per change (``version`` counts up; the highest version is the one in force).

Indexes: ``(deal_id, field, at)`` walks one deal's transitions in order (time in stage);
``(field, new, at)`` finds the deals that entered a stage in a period (won/lost dates).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.models import ts

SOURCES = ("chat", "card", "web", "api", "import", "erp", "migration", "system")
FIELDS = ("stage", "amount", "owner", "expected_close")


class DealHistory(SQLModel, table=True):
    __tablename__ = "deal_history"
    __table_args__ = (Index("ix_deal_history_deal_field_at", "deal_id", "field", "at"),
                      Index("ix_deal_history_field_new_at", "field", "new", "at"))
    id: int | None = Field(default=None, primary_key=True)
    # a deal's history goes with it (deleting deals is rare: imports, tests, a GDPR erase)
    deal_id: int = Field(sa_column=Column(Integer, ForeignKey("deals.id", ondelete="CASCADE"),
                                          nullable=False))
    field: str  # stage | amount | owner | expected_close
    old: str | None = None
    new: str | None = None
    who: str = ""  # a user id, or a source label ("api", "import", "erp", "migration")
    source: str = ""
    at: datetime = ts()


class SalesTarget(SQLModel, table=True):
    __tablename__ = "sales_targets"
    __table_args__ = (UniqueConstraint("scope", "scope_id", "period_kind", "period_start",
                                       "metric", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    scope: str  # user | team
    scope_id: int
    period_kind: str  # month | quarter | year
    period_start: date
    metric: str  # won | collected | visits
    value: float
    version: int = 1
    created_by: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = ts()


class ForecastSnapshot(SQLModel, table=True):
    """A forecast as it stood on a Monday (``taken_on``), stored, never recomputed: one row
    per (scope, period, method). ``scope``: user | team | company (scope_id 0). ``method``:
    weighted (won so far + open deals × stage probability), commit (won + commit deals),
    best_case (commit + best case deals), pipeline (won + every open deal not omitted).
    ``won`` is what was already won in the period that day; ``basis`` says whose stage
    probabilities weighted it (learned | default)."""

    __tablename__ = "forecast_snapshots"
    __table_args__ = (UniqueConstraint("taken_on", "scope", "scope_id", "period_kind",
                                       "period_start", "method"),
                      Index("ix_forecast_snapshots_period", "period_kind", "period_start",
                            "scope", "scope_id"))
    id: int | None = Field(default=None, primary_key=True)
    taken_on: date
    scope: str
    scope_id: int
    period_kind: str
    period_start: date
    method: str
    value: float
    won: float = 0
    basis: str = ""
    created_at: datetime = ts()
