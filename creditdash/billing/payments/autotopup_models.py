"""Auto top-up tables: saved payment methods with their consent, one rule per workspace, and
one attempt row per automatic purchase.

The rails are in the schema, not in Python checks:
- `autotopup_attempts.in_flight_key` holds the workspace id while an attempt is unresolved and
  NULL afterwards; it is UNIQUE, so a second attempt in flight for the same workspace cannot be
  written, whichever process tries. (NULLs never collide, on SQLite and on PostgreSQL.)
- `autotopup_attempts.order_id` is UNIQUE: one automatic order per attempt, one attempt per order.
- `autotopup_rules.in_flight_attempt_id` is claimed by one conditional UPDATE (`... WHERE
  in_flight_attempt_id IS NULL AND <cool-down passed>`), checked by its row count: of a burst of
  requests crossing the threshold together exactly one wins and opens an order.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from creditdash.core.timeutil import utcnow

METHOD_STATUSES = ("pending", "active", "removed")
RULE_STATUSES = ("active", "paused", "disabled")
ATTEMPT_STATUSES = ("charging", "succeeded", "failed", "requires_action")
# The rule pauses itself after this many failed attempts in a row.
MAX_CONSECUTIVE_FAILURES = 3


class SavedPaymentMethod(SQLModel, table=True):
    """A card the workspace saved for off-session payments, with the consent given for it."""

    __tablename__ = "autotopup_methods"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'active', 'removed')", name="ck_autotopup_methods_status"
        ),
        UniqueConstraint("provider", "setup_session_id", name="uq_autotopup_methods_setup"),
        UniqueConstraint("provider", "method_ref", name="uq_autotopup_methods_ref"),
        Index("ix_autotopup_methods_customer", "customer_id", "status"),
    )

    id: str = Field(primary_key=True, max_length=40)
    customer_id: str = Field(foreign_key="customers.id", max_length=40)
    provider: str = Field(max_length=16)
    # The provider's customer (Stripe: cus_...), reused for every setup of the workspace.
    customer_ref: str = Field(default="", max_length=255)
    # The hosted setup page (Stripe: a Checkout Session in setup mode).
    setup_session_id: str | None = Field(default=None, max_length=255)
    setup_url: str | None = Field(default=None, max_length=2000)
    # The provider's payment method (Stripe: pm_...), learned from the signed webhook.
    method_ref: str | None = Field(default=None, max_length=255)
    brand: str = Field(default="", max_length=32)
    last4: str = Field(default="", max_length=4)
    exp_month: int | None = None
    exp_year: int | None = None
    status: str = Field(default="pending", max_length=16)
    # What the member agreed to, word for word, under which terms, and when.
    consent_text: str = Field(sa_column=Column(Text, nullable=False))
    consent_terms_version: str = Field(max_length=40)
    consent_at: datetime
    created_by_user_id: int | None = Field(default=None, foreign_key="users.id")
    created_by_label: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    activated_at: datetime | None = None
    removed_at: datetime | None = None


class AutoTopupRule(SQLModel, table=True):
    """When the workspace's available credits fall below threshold_micros, buy the package."""

    __tablename__ = "autotopup_rules"
    __table_args__ = (
        CheckConstraint(
            "status IN ('active', 'paused', 'disabled')", name="ck_autotopup_rules_status"
        ),
        CheckConstraint(
            "threshold_micros > 0 AND quantity >= 1 AND cooldown_s >= 0 "
            "AND consecutive_failures >= 0 "
            "AND (monthly_cap_micros IS NULL OR monthly_cap_micros > 0) "
            "AND (daily_cap_micros IS NULL OR daily_cap_micros > 0)",
            name="ck_autotopup_rules_amounts",
        ),
    )

    customer_id: str = Field(primary_key=True, foreign_key="customers.id", max_length=40)
    status: str = Field(default="active", max_length=16)
    threshold_micros: int = Field(sa_type=BigInteger)
    package_id: str = Field(foreign_key="credit_packages.id", max_length=40)
    quantity: int = 1
    # Caps on the credits bought automatically in a UTC month / UTC day (NULL: no cap).
    monthly_cap_micros: int | None = Field(default=None, sa_type=BigInteger)
    daily_cap_micros: int | None = Field(default=None, sa_type=BigInteger)
    cooldown_s: int = 600
    method_id: str | None = Field(default=None, foreign_key="autotopup_methods.id", max_length=40)
    consecutive_failures: int = 0
    # The attempt in flight, claimed by one conditional UPDATE; NULL when none is.
    in_flight_attempt_id: str | None = Field(default=None, max_length=40)
    last_attempt_at: datetime | None = None
    paused_reason: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AutoTopupAttempt(SQLModel, table=True):
    """One automatic purchase: the order it opened and how the off-session payment ended."""

    __tablename__ = "autotopup_attempts"
    __table_args__ = (
        CheckConstraint(
            "status IN ('charging', 'succeeded', 'failed', 'requires_action')",
            name="ck_autotopup_attempts_status",
        ),
        CheckConstraint(
            "credits_micros > 0 AND amount_minor > 0", name="ck_autotopup_attempts_amounts"
        ),
        UniqueConstraint("in_flight_key", name="uq_autotopup_attempts_in_flight"),
        UniqueConstraint("order_id", name="uq_autotopup_attempts_order"),
        Index("ix_autotopup_attempts_customer_created", "customer_id", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    customer_id: str = Field(foreign_key="customers.id", max_length=40)
    # The workspace id while the attempt is unresolved, NULL once it is (UNIQUE: one in flight).
    in_flight_key: str | None = Field(default=None, max_length=40)
    order_id: str = Field(foreign_key="payment_orders.id", max_length=40)
    method_id: str = Field(foreign_key="autotopup_methods.id", max_length=40)
    provider: str = Field(max_length=16)
    status: str = Field(default="charging", max_length=16)
    # What triggered it: "gateway" (after a settlement), "jobs" (the backstop), "cli".
    trigger: str = Field(max_length=16)
    available_micros: int = Field(sa_type=BigInteger)
    credits_micros: int = Field(sa_type=BigInteger)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    provider_payment_id: str | None = Field(default=None, max_length=255)
    failure_code: str = Field(default="", max_length=64)
    failure_message: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None
