"""Payment tables: credit packages, payment orders and their history, provider events, refunds.

Money is BIGINT minor units of the order's currency (`*_minor`) with the currency beside it;
credits are micros. An order is the commercial intent; the ledger moves credits only when an
order is settled (a verified provider event or an approved manual payment) or refunded.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from creditdash.core.timeutil import utcnow

PACKAGE_KINDS = ("standard", "custom")
ORDER_STATUSES = (
    "awaiting_payment",
    "paid",
    "partially_refunded",
    "refunded",
    "cancelled",
    "expired",
)
ORDER_METHODS = ("checkout", "manual")
REFUND_STATUSES = ("pending", "succeeded", "failed")


def _big(default: int | None = 0, *, nullable: bool = False) -> Column:  # type: ignore[type-arg,unused-ignore]
    if default is None:
        return Column(BigInteger, nullable=nullable)
    return Column(BigInteger, nullable=nullable, default=default, server_default=str(default))


class CreditPackage(SQLModel, table=True):
    """What a customer can buy: a price per unit and the credits (and bonus) each unit grants."""

    __tablename__ = "credit_packages"
    __table_args__ = (
        CheckConstraint("kind IN ('standard', 'custom')", name="ck_credit_packages_kind"),
        CheckConstraint(
            "unit_price_minor > 0 AND credits_micros > 0 AND bonus_micros >= 0 "
            "AND min_quantity >= 1 AND max_quantity >= min_quantity",
            name="ck_credit_packages_amounts",
        ),
    )

    id: str = Field(primary_key=True, max_length=40)
    # "Starter", "Growth", "Enterprise", "Custom", ...; save_package matches names in any case.
    name: str = Field(max_length=80, unique=True)
    kind: str = Field(default="standard", max_length=16)
    description: str = Field(default="", max_length=500)
    currency: str = Field(max_length=3)
    unit_price_minor: int = Field(sa_column=_big(None))
    credits_micros: int = Field(sa_column=_big(None))
    bonus_micros: int = Field(default=0, sa_column=_big(0))
    min_quantity: int = Field(default=1)
    max_quantity: int = Field(default=1)
    # Custom packages are contract terms: an admin opens the order, a bank transfer settles it.
    manual_only: bool = Field(default=False)
    active: bool = Field(default=True)
    sort_order: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PaymentOrder(SQLModel, table=True):
    """A customer's intent to buy credits, with the final amount fixed before payment."""

    __tablename__ = "payment_orders"
    __table_args__ = (
        CheckConstraint(
            "status IN ('awaiting_payment', 'paid', 'partially_refunded', 'refunded', "
            "'cancelled', 'expired')",
            name="ck_payment_orders_status",
        ),
        CheckConstraint("method IN ('checkout', 'manual')", name="ck_payment_orders_method"),
        CheckConstraint(
            "quantity >= 1 AND credits_micros > 0 AND bonus_micros >= 0 AND net_minor > 0 "
            "AND tax_minor >= 0 AND gross_minor = net_minor + tax_minor "
            "AND refunded_minor >= 0 AND refunded_minor <= gross_minor "
            "AND refunded_credits_micros >= 0",
            name="ck_payment_orders_amounts",
        ),
        UniqueConstraint("provider", "checkout_session_id", name="uq_payment_orders_session"),
        Index("ix_payment_orders_customer_created", "customer_id", "created_at"),
        Index("ix_payment_orders_status_expires", "status", "expires_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    customer_id: str = Field(foreign_key="customers.id", max_length=40)
    package_id: str = Field(foreign_key="credit_packages.id", max_length=40)
    package_name: str = Field(max_length=80)
    quantity: int
    # Purchased credits and bonus credits for the whole order (not per unit).
    credits_micros: int = Field(sa_column=_big(None))
    bonus_micros: int = Field(default=0, sa_column=_big(0))
    currency: str = Field(max_length=3)
    net_minor: int = Field(sa_column=_big(None))
    tax_minor: int = Field(default=0, sa_column=_big(0))
    gross_minor: int = Field(sa_column=_big(None))
    # "untaxed" until the invoices issue computes VAT/GST; the order says so.
    tax_scheme: str = Field(default="untaxed", max_length=40)
    tax_snapshot_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    billing_profile_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    method: str = Field(max_length=16)
    # "stripe" or "sandbox" for checkout orders; "manual" for bank transfers.
    provider: str = Field(max_length=16)
    status: str = Field(default="awaiting_payment", max_length=24)
    checkout_session_id: str | None = Field(default=None, max_length=255)
    checkout_url: str | None = Field(default=None, max_length=2000)
    # The provider's payment (Stripe: the PaymentIntent), learned from the settling event.
    provider_payment_id: str | None = Field(default=None, max_length=255)
    # The reference a customer writes on a bank transfer (manual orders).
    transfer_reference: str | None = Field(default=None, max_length=40, unique=True)
    # The admin's record of the payment that settled a manual order.
    payment_reference: str | None = Field(default=None, max_length=200)
    terms_version: str = Field(max_length=40)
    terms_accepted_at: datetime | None = None
    refunded_minor: int = Field(default=0, sa_column=_big(0))
    refunded_credits_micros: int = Field(default=0, sa_column=_big(0))
    created_by_user_id: int | None = Field(default=None, foreign_key="users.id")
    created_by_label: str = Field(default="", max_length=200)
    settled_by_user_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    paid_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class OrderEvent(SQLModel, table=True):
    """An order's history: every status change and notable event, in order."""

    __tablename__ = "order_events"

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="payment_orders.id", index=True, max_length=40)
    from_status: str | None = Field(default=None, max_length=24)
    to_status: str = Field(max_length=24)
    actor_label: str = Field(max_length=200)
    note: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow)


class PaymentEvent(SQLModel, table=True):
    """A verified provider event, stored once; its effect is applied in the same transaction."""

    __tablename__ = "payment_events"
    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_payment_events_provider_event"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=16)
    event_id: str = Field(max_length=255)
    event_type: str = Field(max_length=80)
    order_id: str | None = Field(default=None, max_length=40, index=True)
    # credited | already_settled | amount_mismatch | unknown_order | ignored | expired |
    # payment_failed | refunded | awaiting_async_payment | not_applicable
    # card_saved | card_details | unknown_setup | payment_failed (automatic top-ups)
    # dispute_opened | dispute_won | dispute_lost | dispute_warning_closed | already_recorded |
    # already_closed | unknown_payment (disputes, billing/payments/disputes.py)
    outcome: str = Field(max_length=32)
    # The provider's payment (PaymentIntent) a refund event names, to match it to its order.
    provider_payment_id: str | None = Field(default=None, max_length=255, index=True)
    detail: str = Field(default="", max_length=500)
    payload_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Refund(SQLModel, table=True):
    """Money returned for a paid order, and the credits taken back for it; once per refund id."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="ck_refunds_status"),
        CheckConstraint(
            "amount_minor > 0 AND credits_micros >= 0 AND unrecovered_micros >= 0",
            name="ck_refunds_amounts",
        ),
        UniqueConstraint("provider", "provider_refund_id", name="uq_refunds_provider_refund"),
    )

    # The refund id is its idempotency key: chosen by the caller, or derived from the event.
    id: str = Field(primary_key=True, max_length=120)
    order_id: str = Field(foreign_key="payment_orders.id", index=True, max_length=40)
    provider: str = Field(max_length=16)
    provider_refund_id: str | None = Field(default=None, max_length=255)
    amount_minor: int = Field(sa_column=_big(None))
    currency: str = Field(max_length=3)
    # Credits taken back from the customer, and those that could not be (already spent).
    credits_micros: int = Field(default=0, sa_column=_big(0))
    unrecovered_micros: int = Field(default=0, sa_column=_big(0))
    status: str = Field(default="pending", max_length=16)
    reason: str = Field(default="", max_length=500)
    failure: str = Field(default="", max_length=500)
    actor_label: str = Field(max_length=200)
    actor_user_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
