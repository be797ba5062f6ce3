"""Tables of payment reconciliation and disputes (billing/payments/reconcile.py, disputes.py).

- `payment_reconcile_runs`: one row per reconcile run, with its window, counts and findings, so
  the admin sees the last run and the jobs loop knows when the daily one last ran.
- `sandbox_paid_sessions`: the sandbox provider's own record of checkout sessions it took
  payment for, written before it delivers the webhook; reconcile compares it with the orders
  just as it compares Stripe's list of paid sessions.
- `payment_disputes`: one row per provider dispute (UNIQUE), with the credits frozen for it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from creditdash.core.timeutil import utcnow

DISPUTE_STATUSES = ("open", "won", "lost", "warning_closed")


class ReconcileRun(SQLModel, table=True):
    """One reconcile run: when, over which window, what it found and did."""

    __tablename__ = "payment_reconcile_runs"
    __table_args__ = (Index("ix_payment_reconcile_runs_started", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    # "cli", "admin:<email>", "jobs": who started it.
    trigger: str = Field(max_length=200)
    # The daily job's runs only: "daily-after:<id of the previous daily run>". UNIQUE, so of
    # two processes that both find the last daily run 24 h old, one inserts its successor.
    claim_key: str | None = Field(default=None, max_length=80, unique=True)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    window_start: datetime
    window_end: datetime
    sessions_seen: int = 0
    credited: int = 0
    already_credited: int = 0
    mismatches: int = 0
    unmatched: int = 0
    # The findings as JSON lists: credited sessions, mismatches, sessions without an order.
    findings_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    error: str = Field(default="", max_length=500)


class SandboxPaidSession(SQLModel, table=True):
    """A sandbox checkout session the customer paid on the sandbox page."""

    __tablename__ = "sandbox_paid_sessions"

    session_id: str = Field(primary_key=True, max_length=255)
    order_id: str = Field(max_length=40, index=True)
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    payment_intent: str = Field(max_length=255)
    paid_at: datetime = Field(default_factory=utcnow, index=True)


class Dispute(SQLModel, table=True):
    """A payment the buyer disputed with their bank, and the credits frozen while it is open.

    frozen_micros is held in the ledger (a pending transfer keyed dispute:<id>:hold); it is
    what the disputed amount bought, as far as the customer still had it when the dispute
    opened. shortfall_micros is the rest, already spent then, recorded but not frozen.
    """

    __tablename__ = "payment_disputes"
    __table_args__ = (
        UniqueConstraint("provider", "provider_dispute_id", name="uq_payment_disputes_provider"),
        CheckConstraint(
            "status IN ('open', 'won', 'lost', 'warning_closed')",
            name="ck_payment_disputes_status",
        ),
        CheckConstraint(
            "amount_minor > 0 AND frozen_micros >= 0 AND shortfall_micros >= 0",
            name="ck_payment_disputes_amounts",
        ),
        Index("ix_payment_disputes_status", "status", "opened_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    provider: str = Field(max_length=16)
    provider_dispute_id: str = Field(max_length=255)
    order_id: str = Field(foreign_key="payment_orders.id", index=True, max_length=40)
    customer_id: str = Field(foreign_key="customers.id", max_length=40)
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    frozen_micros: int = Field(sa_column=Column(BigInteger, nullable=False))
    shortfall_micros: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    hold_id: int | None = None
    reason: str = Field(default="", max_length=80)
    status: str = Field(default="open", max_length=16)
    opened_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)
