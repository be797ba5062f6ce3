"""Ledger tables: accounts with cached balances, and immutable transfers.

Modelled on TigerBeetle. A hold is a transfer of kind "pending"; it is resolved by exactly one
later transfer of kind "post", "void" or "expire" that names it in pending_id (UNIQUE). Amounts
are integer micros of a credit (1 credit = 1,000,000 micros).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Text
from sqlmodel import Field, SQLModel

from creditdash.core.timeutil import utcnow

TRANSFER_KINDS = ("single", "pending", "post", "void", "expire")
RESOLUTION_KINDS = ("post", "void", "expire")


def _micros(default: int = 0) -> Column:  # type: ignore[type-arg,unused-ignore]
    return Column(BigInteger, nullable=False, default=default, server_default=str(default))


class LedgerAccount(SQLModel, table=True):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("kind IN ('customer', 'platform')", name="ck_ledger_accounts_kind"),
        CheckConstraint(
            "credits_posted >= 0 AND debits_posted >= 0 AND credits_pending >= 0 "
            "AND debits_pending >= 0 AND credit_limit_micros >= 0",
            name="ck_ledger_accounts_nonnegative",
        ),
        # Invariant 1, as a backstop to the conditional UPDATEs in billing/ledger.py.
        CheckConstraint(
            "NOT enforce_limit OR "
            "credits_posted - debits_posted - debits_pending >= -credit_limit_micros",
            name="ck_ledger_accounts_limit",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    # "customer:<customer id>" or "platform:<name>".
    code: str = Field(max_length=80, unique=True)
    kind: str = Field(max_length=16)
    customer_id: str | None = Field(
        default=None, foreign_key="customers.id", unique=True, max_length=40
    )
    # Credit-normal customer accounts may not spend past their credit limit; platform accounts
    # are the other side of every entry and run freely negative.
    enforce_limit: bool = Field(default=False)
    credit_limit_micros: int = Field(default=0, sa_column=_micros())
    credits_posted: int = Field(default=0, sa_column=_micros())
    debits_posted: int = Field(default=0, sa_column=_micros())
    credits_pending: int = Field(default=0, sa_column=_micros())
    debits_pending: int = Field(default=0, sa_column=_micros())
    created_at: datetime = Field(default_factory=utcnow)


class Transfer(SQLModel, table=True):
    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('single', 'pending', 'post', 'void', 'expire')", name="ck_transfers_kind"
        ),
        CheckConstraint("debit_account_id <> credit_account_id", name="ck_transfers_accounts"),
        CheckConstraint(
            "amount_micros > 0 OR (kind IN ('post', 'void', 'expire') AND amount_micros >= 0)",
            name="ck_transfers_amount",
        ),
        CheckConstraint(
            "(kind IN ('post', 'void', 'expire')) = (pending_id IS NOT NULL)",
            name="ck_transfers_pending_ref",
        ),
        CheckConstraint(
            "kind = 'post' OR kind IN ('single', 'pending') OR amount_micros = 0",
            name="ck_transfers_void_amount",
        ),
        Index("ix_transfers_debit", "debit_account_id", "id"),
        Index("ix_transfers_credit", "credit_account_id", "id"),
        Index("ix_transfers_open_holds", "kind", "expires_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=8)
    debit_account_id: int = Field(foreign_key="ledger_accounts.id")
    credit_account_id: int = Field(foreign_key="ledger_accounts.id")
    # For "single" and "pending": the amount moved or held. For "post": the amount posted (the
    # rest of the hold is released). For "void" and "expire": 0, the whole hold is released.
    amount_micros: int = Field(sa_column=Column(BigInteger, nullable=False))
    pending_id: int | None = Field(default=None, foreign_key="transfers.id", unique=True)
    # Why money moved: "grant", "debit_adjustment", "usage", "topup", "refund", ...
    code: str = Field(max_length=40)
    reference: str | None = Field(default=None, max_length=120, index=True)
    memo: str = Field(default="", max_length=500)
    expires_at: datetime | None = None
    actor_user_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow)


class UsageRecord(SQLModel, table=True):
    """One metered gateway request: what was asked, what ran, what it cost, what was charged.

    Written in the same transaction as the ledger post (or void) that settles its hold.
    """

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_customer_created", "customer_id", "created_at"),
        Index("ix_usage_records_key_created", "api_key_id", "created_at"),
        CheckConstraint(
            "usage_source IN ('provider', 'estimated', 'none')", name="ck_usage_records_source"
        ),
    )

    # The request id the customer sees (x-request-id).
    id: str = Field(primary_key=True, max_length=40)
    customer_id: str = Field(foreign_key="customers.id", max_length=40)
    api_key_id: str = Field(foreign_key="api_keys.id", max_length=40)
    # The API the client called (chat, completions, embeddings, responses, messages) and the
    # one the upstream was sent (the same unless the gateway translated; "" when no route ran).
    endpoint: str = Field(max_length=40)
    upstream_endpoint: str = Field(
        default="", max_length=40, sa_column_kwargs={"server_default": ""}
    )
    public_model: str = Field(max_length=120)
    provider: str = Field(default="", max_length=80)
    upstream_model: str = Field(default="", max_length=200)
    stream: bool = Field(default=False)
    http_status: int = Field(default=0)
    # ok | upstream_error | client_disconnected | upstream_error_mid_stream | upstream_incomplete
    # | settlement_failed (see docs/design.md "How a request ends")
    status: str = Field(max_length=32)
    prompt_tokens: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    completion_tokens: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    cached_tokens: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    reasoning_tokens: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # Input tokens written to the provider's prompt cache (part of prompt_tokens, like cached).
    cache_write_tokens: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    # provider: the upstream's usage object; estimated: counted by us; none: nothing was billed.
    usage_source: str = Field(max_length=16)
    upstream_cost_micros: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    price_micros: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # Charged beyond the hold that the customer's balance could not cover (recorded, not lost).
    unbilled_micros: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # Output tokens the upstream reported beyond the cap the gateway sent it (times the number
    # of choices): not plausible, so not charged; shown to operators.
    disputed_completion_tokens: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    balance_after_micros: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    latency_ms: int = Field(default=0)
    ttfb_ms: int | None = None
    attempts: int = Field(default=0)
    # JSON list of {provider, upstream_model, outcome, status, latency_ms} per upstream try.
    attempts_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    hold_id: int | None = Field(default=None, foreign_key="transfers.id")
    created_at: datetime = Field(default_factory=utcnow)


@dataclass(slots=True)
class TransferRow:
    """A transfer as the ledger functions return it: a plain value, cheap to build.

    The hot path builds several per request; an ORM instance costs ten times as much.
    """

    idempotency_key: str
    kind: str
    debit_account_id: int
    credit_account_id: int
    amount_micros: int
    code: str
    reference: str | None = None
    memo: str = ""
    pending_id: int | None = None
    expires_at: datetime | None = None
    actor_user_id: int | None = None
    created_at: datetime = field(default_factory=utcnow)
    id: int | None = None
    # Not a column: True when a call with a used idempotency key returned this existing row.
    replayed: bool = False


@dataclass(slots=True)
class UsageEntry:
    """The values of one usage record, before it is written (see UsageRecord)."""

    id: str
    customer_id: str
    api_key_id: str
    endpoint: str
    public_model: str
    status: str
    usage_source: str
    upstream_endpoint: str = ""
    provider: str = ""
    upstream_model: str = ""
    stream: bool = False
    http_status: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    upstream_cost_micros: int = 0
    price_micros: int = 0
    unbilled_micros: int = 0
    disputed_completion_tokens: int = 0
    balance_after_micros: int = 0
    latency_ms: int = 0
    ttfb_ms: int | None = None
    attempts: int = 0
    attempts_json: str = "[]"
    hold_id: int | None = None
    created_at: datetime = field(default_factory=utcnow)
