"""Tables added by the alerts feature (issue 5), and the indexes that keep its scans fast.

- ``alert_state``: one row per (rule, entity) that has alerted: the level last sent (cooldown
  "unless it worsens"), when, and a snooze; ``active`` marks a condition that still holds
  (e.g. a customer tagged dormant, so the untag scan reads a few rows, not all customers).
- ``customer_health``: the latest health score per customer with its explained components.
- ``job_runs``: one row per scheduled run (job, local day); written in the run's transaction,
  so a run that committed never runs again and a run that crashed is run again.

Indexes (RELIABILITY.md §2: a low-selectivity single-column index is worse than none; lead with
the predicate that selects): partial ``deals(last_activity_at) WHERE stage NOT IN ('won',
'lost')`` for the stale scan and ``invoices(due_date) WHERE paid_at IS NULL`` for the overdue
scan. Queries must repeat the partial predicate literally (SQLite matches terms textually).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from storage.models import Customer, Deal, Invoice, jsoncol, ts

OPEN_DEAL_SQL = "stage NOT IN ('won', 'lost')"
UNPAID_SQL = "paid_at IS NULL"

Index("ix_deals_open_activity", Deal.__table__.c.last_activity_at,
      sqlite_where=text(OPEN_DEAL_SQL), postgresql_where=text(OPEN_DEAL_SQL))
Index("ix_invoices_unpaid_due", Invoice.__table__.c.due_date,
      sqlite_where=text(UNPAID_SQL), postgresql_where=text(UNPAID_SQL))
Index("ix_customers_last_activity", Customer.__table__.c.last_activity_at)


class AlertState(SQLModel, table=True):
    __tablename__ = "alert_state"
    __table_args__ = (UniqueConstraint("rule", "entity_id"),
                      Index("ix_alert_state_rule_active", "rule", "active"))
    id: int | None = Field(default=None, primary_key=True)
    rule: str  # stale | overdue | dormant | health
    entity_id: int
    level: int = 0  # severity rank (stale), ladder rung in days (overdue), 1 (dormant)
    value: float = 0  # days idle / days overdue / score when last alerted
    active: bool = False
    last_alerted_at: datetime | None = ts(nullable=True)
    snoozed_until: datetime | None = ts(nullable=True)
    updated_at: datetime = ts()


class CustomerHealth(SQLModel, table=True):
    __tablename__ = "customer_health"
    customer_id: int = Field(foreign_key="customers.id", primary_key=True)
    score: float
    grade: str
    components: dict = jsoncol(dict)
    computed_at: datetime = ts()


class JobRun(SQLModel, table=True):
    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("name", "run_key"),)
    id: int | None = Field(default=None, primary_key=True)
    name: str
    run_key: str
    instance: str = ""
    detail: dict = jsoncol(dict)
    started_at: datetime = ts()
    finished_at: datetime | None = ts(nullable=True)


__all__ = ["OPEN_DEAL_SQL", "UNPAID_SQL", "AlertState", "CustomerHealth", "JobRun"]
