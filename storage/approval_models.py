"""Tables added by the approvals feature (issue 4).

``approval_requests`` / ``approval_steps`` live in ``storage.models``; these tables hold what the
state machine needs beside them: per-request facts shown on cards, per-step timers for reminders
and escalation, out-of-office delegations, and the cards we sent (to update them later).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.models import jsoncol, ts


class ApprovalInfo(SQLModel, table=True):
    """What the requester typed, kept verbatim for cards and audits (one row per request)."""

    __tablename__ = "approval_info"
    request_id: int = Field(foreign_key="approval_requests.id", primary_key=True)
    subject: str = ""  # the customer as typed (new-customer: the proposed name)
    platform: str = ""  # where the request was made
    discount_amount: float | None = None
    rules: dict = jsoncol(dict)  # the rule set (with version) the chain was built from


class ApprovalTimer(SQLModel, table=True):
    """When a step became current and what the scheduler already did about it."""

    __tablename__ = "approval_timers"
    step_id: int = Field(foreign_key="approval_steps.id", primary_key=True)
    request_id: int = Field(foreign_key="approval_requests.id", index=True)
    active_since: datetime = ts()
    reminded_at: datetime | None = ts(nullable=True)
    escalations: int = 0
    original_approver_id: int | None = Field(default=None, foreign_key="users.id")


class ApprovalDelegation(SQLModel, table=True):
    """``委托 张三 至 12-01``: the delegate may act for the delegator until ``until``."""

    __tablename__ = "approval_delegations"
    __table_args__ = (Index("ix_approval_delegations_delegator", "delegator_id", "until"),)
    id: int | None = Field(default=None, primary_key=True)
    delegator_id: int = Field(foreign_key="users.id")
    delegate_id: int = Field(foreign_key="users.id", index=True)
    until: datetime = ts()
    active: bool = True
    created_at: datetime = ts()


class ApprovalCard(SQLModel, table=True):
    """A card we sent about a request: ``outbox_key`` finds the platform's card ref later."""

    __tablename__ = "approval_cards"
    __table_args__ = (UniqueConstraint("outbox_key"),
                      Index("ix_approval_cards_request", "request_id", "seq"))
    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="approval_requests.id")
    seq: int = 0  # the step the card is about (0: the requester's card)
    user_id: int = Field(foreign_key="users.id")
    target: dict = jsoncol(dict)
    outbox_key: str
    card_id: str = ""
    closed: bool = False
    created_at: datetime = ts()
