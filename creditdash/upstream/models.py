"""The tables of upstream cost reconciliation: an operator's admin key per provider, and the
daily cost per model the provider reported (fetched from its cost API or imported from CSV).

Costs are integer micros of a credit, converted from the provider's USD at the rate
CREDITDASH_PRICE_SYNC_CREDITS_PER_USD, the same rate `prices sync` uses for route costs."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from creditdash.core.timeutil import utcnow

COST_SOURCES = ("openai_api", "anthropic_api", "csv")
# The purpose the admin key is encrypted under: not the gateway's provider-key purpose, so a
# key meant for cost reports can never be decrypted as (or sent as) an inference key.
ADMIN_KEY_PURPOSE = "provider-admin-key"


class UpstreamCostSource(SQLModel, table=True):
    """Where one provider's cost report is read: its admin API base URL and admin key."""

    __tablename__ = "upstream_cost_sources"

    provider_id: int = Field(foreign_key="providers.id", primary_key=True)
    base_url: str = Field(max_length=500)
    # Fernet token (crypto.encrypt, purpose ADMIN_KEY_PURPOSE); never leaves the server.
    admin_key_encrypted: str = Field(default="", sa_column=Column(Text, nullable=False))
    admin_key_last4: str = Field(default="", max_length=8)
    updated_at: datetime = Field(default_factory=utcnow)


class UpstreamDailyCost(SQLModel, table=True):
    """What a provider reported it charged for one model on one UTC day."""

    __tablename__ = "upstream_daily_costs"
    __table_args__ = (
        UniqueConstraint("provider_id", "day", "model", name="uq_upstream_daily_costs_day"),
        CheckConstraint(
            "source IN ('openai_api', 'anthropic_api', 'csv')",
            name="ck_upstream_daily_costs_source",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider_id: int = Field(foreign_key="providers.id", index=True)
    day: date = Field(index=True)
    model: str = Field(max_length=200)
    # Negative amounts exist upstream (credits and refunds), so no sign check.
    cost_micros: int = Field(sa_column=Column(BigInteger, nullable=False))
    source: str = Field(max_length=16)
    imported_at: datetime = Field(default_factory=utcnow)
