"""Invoicing tables: who is billed, who bills, tax rates as data, and immutable invoices.

An invoice (or credit note) is written once, in the transaction that settles its order or
refund, with its number, lines, tax lines and both parties' details copied in. Nothing updates
or deletes it afterwards (database triggers refuse it); a correction is a credit note.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from creditdash.core.timeutil import utcnow

TAX_SCHEMES = ("standard", "reverse_charge", "exempt", "out_of_scope", "untaxed")
INVOICE_KINDS = ("invoice", "credit_note")


class BillingProfile(SQLModel, table=True):
    """The customer's billing identity; edits never reach invoices already issued."""

    __tablename__ = "billing_profiles"

    customer_id: str = Field(primary_key=True, foreign_key="customers.id", max_length=40)
    legal_name: str = Field(max_length=200)
    address_line1: str = Field(default="", max_length=200)
    address_line2: str = Field(default="", max_length=200)
    city: str = Field(default="", max_length=120)
    postal_code: str = Field(default="", max_length=40)
    # State or province (ISO 3166-2 subdivision without the country, e.g. "ON").
    region: str = Field(default="", max_length=10)
    country: str = Field(max_length=2)
    is_business: bool = Field(default=False)
    # As the customer gave it, and its compact form when the format checked out.
    tax_id: str = Field(default="", max_length=40)
    tax_id_compact: str = Field(default="", max_length=40)
    tax_id_valid: bool = Field(default=False)
    billing_email: str = Field(default="", max_length=320)
    updated_at: datetime = Field(default_factory=utcnow)


class SellerProfile(SQLModel, table=True):
    """The operator's company as it appears on invoices, and where it is registered for tax."""

    __tablename__ = "seller_profile"
    __table_args__ = (CheckConstraint("id = 1", name="ck_seller_profile_single"),)

    id: int = Field(default=1, primary_key=True)
    legal_name: str = Field(max_length=200)
    address_line1: str = Field(default="", max_length=200)
    address_line2: str = Field(default="", max_length=200)
    city: str = Field(default="", max_length=120)
    postal_code: str = Field(default="", max_length=40)
    country: str = Field(max_length=2)
    tax_id: str = Field(default="", max_length=40)
    email: str = Field(default="", max_length=320)
    # JSON list of jurisdictions the seller collects tax in: "DE", "EU_OSS", "GB", "AU", ...
    registrations_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    invoice_prefix: str = Field(default="CD", max_length=10)
    credit_note_prefix: str = Field(default="CN", max_length=10)
    bank_details: str = Field(default="", max_length=500)
    updated_at: datetime = Field(default_factory=utcnow)


class TaxRate(SQLModel, table=True):
    """One rate in one jurisdiction for a period: rules are data with effective dates."""

    __tablename__ = "tax_rates"
    __table_args__ = (
        UniqueConstraint("jurisdiction", "valid_from", name="uq_tax_rates_jurisdiction_from"),
        CheckConstraint("rate_bp >= 0 AND rate_bp <= 10000", name="ck_tax_rates_rate"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # A country ("DE") or a country and subdivision ("CA-ON").
    jurisdiction: str = Field(max_length=10)
    tax_name: str = Field(max_length=20)
    rate_bp: int
    valid_from: date
    valid_to: date | None = None


class InvoiceCounter(SQLModel, table=True):
    """The last number used per series ("CD-2026"); bumped inside the issuing transaction."""

    __tablename__ = "invoice_counters"

    series: str = Field(primary_key=True, max_length=20)
    last_number: int = Field(default=0)


class Invoice(SQLModel, table=True):
    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint("kind IN ('invoice', 'credit_note')", name="ck_invoices_kind"),
        CheckConstraint(
            "net_minor >= 0 AND tax_minor >= 0 AND gross_minor = net_minor + tax_minor",
            name="ck_invoices_totals",
        ),
        CheckConstraint(
            "(kind = 'credit_note') = (credits_invoice_id IS NOT NULL)",
            name="ck_invoices_credit_note_ref",
        ),
        UniqueConstraint("series", "sequence", name="uq_invoices_series_sequence"),
        Index("ix_invoices_customer_issued", "customer_id", "issued_at"),
        # One invoice per order, whatever the locks: a partial unique index.
        Index(
            "uq_invoices_one_per_order",
            "order_id",
            unique=True,
            sqlite_where=text("kind = 'invoice'"),
            postgresql_where=text("kind = 'invoice'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=40, unique=True)
    series: str = Field(max_length=20)
    sequence: int
    kind: str = Field(max_length=16)
    order_id: str = Field(foreign_key="payment_orders.id", index=True, max_length=40)
    customer_id: str = Field(foreign_key="customers.id", max_length=40)
    # A credit note names the invoice it corrects, and the refund it documents (once each).
    credits_invoice_id: int | None = Field(default=None, foreign_key="invoices.id")
    refund_id: str | None = Field(default=None, max_length=120, unique=True)
    issued_at: datetime = Field(default_factory=utcnow)
    currency: str = Field(max_length=3)
    net_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    tax_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    gross_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    tax_scheme: str = Field(max_length=20)
    seller_json: str = Field(sa_column=Column(Text, nullable=False))
    buyer_json: str = Field(sa_column=Column(Text, nullable=False))
    tax_json: str = Field(sa_column=Column(Text, nullable=False))
    payment_reference: str = Field(default="", max_length=255)
    notes: str = Field(default="", max_length=1000)


class InvoiceLine(SQLModel, table=True):
    __tablename__ = "invoice_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "position", name="uq_invoice_lines_pos"),)

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    position: int
    description: str = Field(max_length=300)
    quantity: int
    unit_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    net_minor: int = Field(sa_column=Column(BigInteger, nullable=False))


class InvoiceTaxLine(SQLModel, table=True):
    __tablename__ = "invoice_tax_lines"

    id: int | None = Field(default=None, primary_key=True)
    invoice_id: int = Field(foreign_key="invoices.id", index=True)
    jurisdiction: str = Field(max_length=10)
    code: str = Field(max_length=20)
    name: str = Field(max_length=40)
    rate_bp: int
    taxable_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    wording: str = Field(default="", max_length=500)
