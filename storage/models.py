"""SQLModel tables. Timestamps are UTC-aware everywhere (SQLModel rejects naive ones).

The inbox (``inbox_events``) doubles as the processed-event-id table: its ``dedupe_key`` is
unique, and a callback is acknowledged only after its row is committed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel


def now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """``DateTime(timezone=True)`` that always hands back UTC-aware datetimes.

    PostgreSQL does this itself; SQLite stores text without an offset and would return naive
    datetimes, so code comparing with ``datetime.now(UTC)`` worked on one engine only. Naive
    values are refused on the way in (they are a bug: every timestamp here is UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def ts(index: bool = False, nullable: bool = False, default: bool = True) -> Any:
    kw: dict[str, Any] = {"sa_column": Column(UTCDateTime(), index=index, nullable=nullable)}
    if default and not nullable:
        kw["default_factory"] = now
    elif nullable:
        kw["default"] = None
    return Field(**kw)


def jsoncol(default_factory=dict) -> Any:
    return Field(default_factory=default_factory, sa_column=Column(JSON, nullable=False))


# -- organisation -------------------------------------------------------------------------
class Team(SQLModel, table=True):
    __tablename__ = "teams"
    id: int | None = Field(default=None, primary_key=True)
    name: str
    region: str = ""
    parent_id: int | None = Field(default=None, foreign_key="teams.id")
    manager_id: int | None = None  # users.id; no FK: users→teams already points the other way
    chat_id: int | None = Field(default=None, foreign_key="chats.id")


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    name: str
    role: str = "rep"  # rep | manager | vp | finance | admin
    team_id: int | None = Field(default=None, foreign_key="teams.id", index=True)
    manager_id: int | None = Field(default=None, foreign_key="users.id")
    active: bool = True
    created_at: datetime = ts()


class Identity(SQLModel, table=True):
    """One person may be on two platforms: one row per (platform, app, platform user id)."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("platform", "app_id", "external_id"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    platform: str
    app_id: str
    external_id: str
    display_name: str = ""


class Chat(SQLModel, table=True):
    __tablename__ = "chats"
    __table_args__ = (UniqueConstraint("platform", "app_id", "external_id"),)
    id: int | None = Field(default=None, primary_key=True)
    platform: str
    app_id: str
    external_id: str
    type: str = "group"  # p2p | group
    title: str = ""
    webhook_url: str = ""  # group robot webhook, when alerts go through one


# -- CRM ------------------------------------------------------------------------------------
class Customer(SQLModel, table=True):
    __tablename__ = "customers"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    short_name: str = ""
    region: str = ""
    owner_id: int | None = Field(default=None, foreign_key="users.id", index=True)
    tags: list[str] = jsoncol(list)
    strategic_rating: int = 3
    last_activity_at: datetime | None = ts(nullable=True)
    created_at: datetime = ts()
    # the ERP's own key for this customer (REST API / imports upsert by it); issue 6
    external_id: str | None = Field(default=None, unique=True, index=True)
    # where the customer is (issue 16), as given; coord_system: "wgs84" | "gcj02" | ""
    lat: float | None = None
    lng: float | None = None
    coord_system: str = Field(default="", sa_column_kwargs={"server_default": ""})
    # from master data, or the business registry when created from a sign (issue 16 §4)
    address: str = Field(default="", sa_column_kwargs={"server_default": ""})
    credit_code: str = Field(default="", index=True, sa_column_kwargs={"server_default": ""})


class CustomerAlias(SQLModel, table=True):
    __tablename__ = "customer_aliases"
    __table_args__ = (UniqueConstraint("customer_id", "alias"),)
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    alias: str = Field(index=True)


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    name: str
    title: str = ""
    phone: str = ""


class Deal(SQLModel, table=True):
    __tablename__ = "deals"
    __table_args__ = (Index("ix_deals_owner_stage_activity", "owner_id", "stage",
                            "last_activity_at"),)
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    owner_id: int | None = Field(default=None, foreign_key="users.id")
    title: str
    stage: str = "lead"  # lead | qualified | proposal | negotiation | won | lost
    amount: float = 0
    last_activity_at: datetime = ts()
    created_at: datetime = ts()
    external_id: str | None = Field(default=None, unique=True, index=True)  # the ERP's key
    # the forecast (issue 17): when the rep expects it to close, and the rep's own call
    expected_close: date | None = Field(default=None, index=True)
    forecast_category: str = Field(default="pipeline",
                                   sa_column_kwargs={"server_default": "pipeline"})


class Invoice(SQLModel, table=True):
    __tablename__ = "invoices"
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    deal_id: int | None = Field(default=None, foreign_key="deals.id")
    number: str = ""
    amount: float
    paid_amount: float = 0
    due_date: date = Field(index=True)
    paid_at: datetime | None = ts(nullable=True)


class Payment(SQLModel, table=True):
    __tablename__ = "payments"
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    amount: float
    paid_at: datetime = ts()
    # the sender's payment id: a retried POST /api/v1/payments is not counted twice
    reference: str | None = Field(default=None, unique=True, index=True)


class Visit(SQLModel, table=True):
    __tablename__ = "visits"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int | None = Field(default=None, foreign_key="users.id", index=True)
    customer_id: int | None = Field(default=None, foreign_key="customers.id", index=True)
    deal_id: int | None = Field(default=None, foreign_key="deals.id")
    source: str = "manual"  # chat_sync | voice | photo | manual
    summary: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    evidence: dict = jsoncol(dict)
    follow_up_on: date | None = None
    created_at: datetime = ts()
    # issue 16: the capture page's idempotency key, and the position the visit was filed at
    client_key: str | None = Field(default=None, unique=True, index=True)
    lat: float | None = None
    lng: float | None = None
    accuracy_m: float | None = None
    coord_system: str = Field(default="", sa_column_kwargs={"server_default": ""})


# -- approvals --------------------------------------------------------------------------------
class ApprovalRequest(SQLModel, table=True):
    __tablename__ = "approval_requests"
    id: int | None = Field(default=None, primary_key=True)
    kind: str  # quote | discount | contract | new_customer
    requester_id: int = Field(foreign_key="users.id", index=True)
    customer_id: int | None = Field(default=None, foreign_key="customers.id")
    deal_id: int | None = Field(default=None, foreign_key="deals.id")
    amount: float = 0
    discount_pct: float | None = None
    note: str = ""
    state: str = "pending"  # draft | pending | approved | rejected | cancelled
    rule_version: int = 1
    version: int = 0  # optimistic lock counter
    created_at: datetime = ts()


class ApprovalStep(SQLModel, table=True):
    __tablename__ = "approval_steps"
    __table_args__ = (UniqueConstraint("request_id", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="approval_requests.id", index=True)
    seq: int
    role: str
    approver_id: int | None = Field(default=None, foreign_key="users.id")
    state: str = "waiting"  # waiting | pending | approved | rejected | skipped
    decided_by: int | None = Field(default=None, foreign_key="users.id")
    decided_at: datetime | None = ts(nullable=True)
    reason: str = ""


# -- bot plumbing ------------------------------------------------------------------------------
class ChatMessage(SQLModel, table=True):
    """Buffered inbound messages for one-tap sync; purged after the window."""

    __tablename__ = "chat_messages"
    __table_args__ = (UniqueConstraint("platform", "app_id", "message_id"),
                      Index("ix_chat_messages_chat_time", "platform", "chat_id", "sent_at"))
    id: int | None = Field(default=None, primary_key=True)
    platform: str
    app_id: str
    chat_id: str
    message_id: str
    sender: str
    sender_name: str = ""
    msg_type: str = "text"
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    sent_at: datetime = ts()


class InboxEvent(SQLModel, table=True):
    """Accepted callbacks; the unique dedupe key makes platform retries harmless."""

    __tablename__ = "inbox_events"
    __table_args__ = (Index("ix_inbox_status_id", "status", "id"),)
    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(
        __import__("sqlalchemy").Integer, "sqlite"), primary_key=True, autoincrement=True))
    dedupe_key: str = Field(unique=True)
    platform: str
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = "pending"  # pending | done | failed
    attempts: int = 0
    error: str = ""
    received_at: datetime = ts()
    claimed_until: datetime | None = ts(nullable=True)
    done_at: datetime | None = ts(nullable=True)


class InboxDone(SQLModel, table=True):
    """The exactly-once guard: a handler's transaction inserts its event's dedupe key here
    with its writes, so a second run of the same event (a sweep after a crash, a concurrent
    run) conflicts and rolls back. It lives with the business tables, whichever file or
    database holds the inbox itself."""

    __tablename__ = "inbox_done"
    dedupe_key: str = Field(primary_key=True)
    done_at: datetime = ts()


class OutboxMessage(SQLModel, table=True):
    """Written before sending, marked sent after; a restart resends what was not sent."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_at"),)
    id: int | None = Field(default=None, primary_key=True)
    idem_key: str = Field(unique=True)
    platform: str
    target: dict = jsoncol(dict)
    message: dict = jsoncol(dict)
    status: str = "pending"  # pending | sent | dead
    attempts: int = 0
    # times a sender took the row; > 1 means it may already have been sent (a crash between
    # send and mark), so the platform's duplicate check is asked for on that resend
    claims: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_at: datetime = ts()
    claimed_until: datetime | None = ts(nullable=True)
    last_error: str = ""
    result: dict = jsoncol(dict)
    created_at: datetime = ts()
    sent_at: datetime | None = ts(nullable=True)


class Job(SQLModel, table=True):
    """Durable slow work (speech-to-text, OCR, reports) queued by ``ctx.defer``."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_next", "status", "next_at"),
                      Index("ix_jobs_status_owner", "status", "owner"))
    id: int | None = Field(default=None, primary_key=True)
    idem_key: str = Field(unique=True)
    name: str
    args: dict = jsoncol(dict)
    # who the work is for ("web:<user id>", "<platform>:<sender>"): the per-user cap counts it
    owner: str = Field(default="", sa_column_kwargs={"server_default": ""})
    result: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    run_ms: int | None = None  # wall time of the last run (``/metrics``: job durations)
    status: str = "pending"  # pending | done | failed
    attempts: int = 0
    next_at: datetime = ts()
    claimed_until: datetime | None = ts(nullable=True)
    last_error: str = ""
    created_at: datetime = ts()


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = ts(index=True)
    actor_id: int | None = Field(default=None, foreign_key="users.id")
    actor_ref: str = ""  # platform:user when not (yet) a known user
    platform: str = ""
    action: str
    entity: str = ""
    entity_id: str = ""
    detail: dict = jsoncol(dict)


class Task(SQLModel, table=True):
    """A follow-up task created from a visit or an alert."""

    __tablename__ = "tasks"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int | None = Field(default=None, foreign_key="users.id", index=True)
    customer_id: int | None = Field(default=None, foreign_key="customers.id")
    deal_id: int | None = Field(default=None, foreign_key="deals.id")
    title: str
    due_on: date | None = None
    done: bool = False
    created_at: datetime = ts()


class Setting(SQLModel, table=True):
    """Admin rules, versioned: one row per (key, version)."""

    __tablename__ = "rules"
    __table_args__ = (UniqueConstraint("key", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str
    version: int
    value: dict = jsoncol(dict)
    created_by: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = ts()


# Feature tables live in their own modules; importing them here registers them with the
# metadata that Alembic and create_app see.
from storage import (  # noqa: E402, F401
    alert_models,
    approval_models,
    registry_models,
    sales_models,
)
