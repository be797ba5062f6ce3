"""The gateway's catalog: upstream providers, public models (with customer prices) and routes
(with upstream cost profiles). Prices are integer micros of a credit per 1M tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from creditdash.core.timeutil import utcnow

SANDBOX_BASE_URL = "http://creditdash-sandbox/v1"
# Provider kinds, and the wire protocol each one's upstream speaks (proxy/wires/).
PROVIDER_KINDS = ("openai", "anthropic", "sandbox", "anthropic-sandbox")
SANDBOX_KINDS = ("sandbox", "anthropic-sandbox")
ANTHROPIC_KINDS = ("anthropic", "anthropic-sandbox")
# The field a route's upstream takes the output cap in (routes.output_cap_param): auto is the
# name a chat client used (else max_tokens); reasoning models take only max_completion_tokens.
OUTPUT_CAP_PARAMS = ("auto", "max_tokens", "max_completion_tokens")
# The Messages API version the gateway speaks to Anthropic-kind upstreams.
ANTHROPIC_VERSION = "2023-06-01"
# The upstream failures a fallback policy can name (PublicModel.fallback_on).
FAILURE_KINDS = ("connect_error", "timeout", "429", "5xx")


def _micros() -> Column:  # type: ignore[type-arg,unused-ignore]
    return Column(BigInteger, nullable=False, default=0, server_default="0")


def _nullable_micros() -> Column:  # type: ignore[type-arg,unused-ignore]
    return Column(BigInteger, nullable=True)


class Provider(SQLModel, table=True):
    __tablename__ = "providers"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('openai', 'anthropic', 'sandbox', 'anthropic-sandbox')",
            name="ck_providers_kind",
        ),
        CheckConstraint("timeout_s > 0 AND timeout_s <= 3600", name="ck_providers_timeout"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, unique=True)
    # "openai": any OpenAI-compatible HTTP API. "anthropic": Anthropic's Messages API (x-api-key,
    # anthropic-version). "sandbox" / "anthropic-sandbox": the built-in responder, in-process,
    # speaking the one or the other.
    kind: str = Field(default="openai", max_length=24)
    # An OpenAI-kind upstream that serves /v1/responses itself: Responses requests pass through
    # instead of being translated onto chat completions.
    serves_responses: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    base_url: str = Field(max_length=500)
    # Fernet token (crypto.encrypt, purpose "provider-key"); never leaves the server.
    api_key_encrypted: str = Field(default="", sa_column=Column(Text, nullable=False))
    api_key_last4: str = Field(default="", max_length=8)
    timeout_s: int = Field(default=300)
    extra_headers_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    enabled: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PublicModel(SQLModel, table=True):
    """A name customers call, with the price they pay."""

    __tablename__ = "public_models"
    __table_args__ = (
        CheckConstraint(
            "input_price_micros_per_mtok >= 0 AND output_price_micros_per_mtok >= 0 "
            "AND cached_input_price_micros_per_mtok >= 0 AND request_fee_micros >= 0",
            name="ck_public_models_prices",
        ),
        CheckConstraint(
            "cache_write_price_micros_per_mtok IS NULL OR cache_write_price_micros_per_mtok >= 0",
            name="ck_public_models_cache_write",
        ),
        CheckConstraint("max_output_tokens > 0", name="ck_public_models_max_output"),
        CheckConstraint(
            "max_media_parts >= 0 AND media_part_tokens >= 0", name="ck_public_models_media"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120, unique=True)
    enabled: bool = Field(default=True)
    input_price_micros_per_mtok: int = Field(default=0, sa_column=_micros())
    output_price_micros_per_mtok: int = Field(default=0, sa_column=_micros())
    cached_input_price_micros_per_mtok: int = Field(default=0, sa_column=_micros())
    request_fee_micros: int = Field(default=0, sa_column=_micros())
    # Input written to the provider's prompt cache; None: charged as input.
    cache_write_price_micros_per_mtok: int | None = Field(
        default=None, sa_column=_nullable_micros()
    )
    # The most output a request may ask for; larger max_tokens are clamped to it, and a
    # request without max_tokens is held for this much output.
    max_output_tokens: int = Field(default=4096)
    # Image and file parts in a request's input: at most max_media_parts of them (0: the model
    # takes text only), each held as media_part_tokens prompt tokens on top of the byte estimate
    # (an image costs a model far more tokens than its URL's bytes suggest).
    max_media_parts: int = Field(default=16, sa_column_kwargs={"server_default": "16"})
    media_part_tokens: int = Field(default=3000, sa_column_kwargs={"server_default": "3000"})
    # Fallback policy: which failures try the next route (a comma list of connect_error,
    # timeout, 429, 5xx; a request's own 4xx never does), how many routes at most, a
    # per-attempt timeout, and a cooldown that rests a route for cooldown_s seconds after
    # cooldown_failures consecutive failures.
    fallback_on: str = Field(default="connect_error,timeout,429,5xx", max_length=80)
    max_attempts: int = Field(default=3)
    attempt_timeout_s: int | None = None
    cooldown_failures: int = Field(default=3)
    cooldown_s: int = Field(default=30)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Route(SQLModel, table=True):
    """One way to serve a public model: a provider, its model name, and what it costs us."""

    __tablename__ = "routes"
    __table_args__ = (
        UniqueConstraint("model_id", "provider_id", "upstream_model", name="uq_routes_target"),
        CheckConstraint("weight >= 0", name="ck_routes_weight"),
        CheckConstraint(
            "input_cost_micros_per_mtok >= 0 AND output_cost_micros_per_mtok >= 0 "
            "AND cached_input_cost_micros_per_mtok >= 0 AND request_cost_micros >= 0",
            name="ck_routes_costs",
        ),
        CheckConstraint(
            "cache_write_cost_micros_per_mtok IS NULL OR cache_write_cost_micros_per_mtok >= 0",
            name="ck_routes_cache_write",
        ),
        CheckConstraint(
            "output_cap_param IN ('auto', 'max_tokens', 'max_completion_tokens')",
            name="ck_routes_output_cap_param",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="public_models.id", index=True)
    provider_id: int = Field(foreign_key="providers.id", index=True)
    upstream_model: str = Field(max_length=200)
    priority: int = Field(default=1)
    weight: int = Field(default=1)
    enabled: bool = Field(default=True)
    # A route that costs more than its model's price runs only once an operator said so.
    negative_margin_acknowledged_at: datetime | None = None
    input_cost_micros_per_mtok: int = Field(default=0, sa_column=_micros())
    output_cost_micros_per_mtok: int = Field(default=0, sa_column=_micros())
    cached_input_cost_micros_per_mtok: int = Field(default=0, sa_column=_micros())
    request_cost_micros: int = Field(default=0, sa_column=_micros())
    cache_write_cost_micros_per_mtok: int | None = Field(default=None, sa_column=_nullable_micros())
    output_cap_param: str = Field(
        default="auto", max_length=24, sa_column_kwargs={"server_default": "auto"}
    )
    created_at: datetime = Field(default_factory=utcnow)


class PriceSchedule(SQLModel, table=True):
    """A customer price that takes effect at a set time (housekeeping applies it, audited).

    Requests are priced at whatever price is current when they run, and each usage record keeps
    it, so a schedule never changes past usage.
    """

    __tablename__ = "price_schedules"
    __table_args__ = (
        CheckConstraint(
            "input_price_micros_per_mtok >= 0 AND output_price_micros_per_mtok >= 0 "
            "AND cached_input_price_micros_per_mtok >= 0 AND request_fee_micros >= 0",
            name="ck_price_schedules_prices",
        ),
        CheckConstraint(
            "cache_write_price_micros_per_mtok IS NULL OR cache_write_price_micros_per_mtok >= 0",
            name="ck_price_schedules_cache_write",
        ),
        CheckConstraint(
            "status IN ('pending', 'applied', 'cancelled')", name="ck_price_schedules_status"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="public_models.id", index=True)
    effective_at: datetime = Field(index=True)
    input_price_micros_per_mtok: int = Field(sa_column=_micros())
    output_price_micros_per_mtok: int = Field(sa_column=_micros())
    cached_input_price_micros_per_mtok: int = Field(sa_column=_micros())
    request_fee_micros: int = Field(default=0, sa_column=_micros())
    cache_write_price_micros_per_mtok: int | None = Field(
        default=None, sa_column=_nullable_micros()
    )
    status: str = Field(default="pending", max_length=16)
    created_by_label: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    applied_at: datetime | None = None


# Where a route cost schedule came from: an admin's edit, or `prices sync` (catalog/price_sync.py).
COST_SCHEDULE_SOURCES = ("admin", "sync")


class RouteCostSchedule(SQLModel, table=True):
    """A route's upstream cost that takes effect at a set time (housekeeping applies it once,
    audited), the cost-side twin of PriceSchedule."""

    __tablename__ = "route_cost_schedules"
    __table_args__ = (
        # Two costs for one route at the same instant cannot both be meant; a repeated sync
        # finds the first instead of adding a second.
        UniqueConstraint("route_id", "effective_at", name="uq_route_cost_schedules_at"),
        CheckConstraint(
            "input_cost_micros_per_mtok >= 0 AND output_cost_micros_per_mtok >= 0 "
            "AND cached_input_cost_micros_per_mtok >= 0 AND request_cost_micros >= 0",
            name="ck_route_cost_schedules_costs",
        ),
        CheckConstraint(
            "cache_write_cost_micros_per_mtok IS NULL OR cache_write_cost_micros_per_mtok >= 0",
            name="ck_route_cost_schedules_cache_write",
        ),
        CheckConstraint(
            "status IN ('pending', 'applied', 'cancelled')", name="ck_route_cost_schedules_status"
        ),
        CheckConstraint("source IN ('admin', 'sync')", name="ck_route_cost_schedules_source"),
    )

    id: int | None = Field(default=None, primary_key=True)
    route_id: int = Field(foreign_key="routes.id", index=True)
    effective_at: datetime = Field(index=True)
    input_cost_micros_per_mtok: int = Field(sa_column=_micros())
    output_cost_micros_per_mtok: int = Field(sa_column=_micros())
    cached_input_cost_micros_per_mtok: int = Field(sa_column=_micros())
    request_cost_micros: int = Field(default=0, sa_column=_micros())
    cache_write_cost_micros_per_mtok: int | None = Field(default=None, sa_column=_nullable_micros())
    status: str = Field(default="pending", max_length=16)
    source: str = Field(default="admin", max_length=16)
    created_by_label: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    applied_at: datetime | None = None


# What a price sync found on a route: a cost that differs from the data, or a model it lacks.
SYNC_REVIEW_KINDS = ("cost_change", "unknown_model")
SYNC_REVIEW_STATUSES = ("pending", "accepted", "rejected")


class PriceSyncReview(SQLModel, table=True):
    """One finding of `prices sync` on one route, pending until an admin accepts or rejects it.

    A cost change carries its schedule; the margin review's verdict (losing) and whether the
    gate closed the route for it (closed, with the route's enabled flag before) are kept so an
    accept reopens exactly what the sync closed."""

    __tablename__ = "price_sync_reviews"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('cost_change', 'unknown_model')", name="ck_price_sync_reviews_kind"
        ),
        CheckConstraint(
            "status IN ('pending', 'accepted', 'rejected')", name="ck_price_sync_reviews_status"
        ),
        CheckConstraint(
            "kind = 'unknown_model' OR schedule_id IS NOT NULL",
            name="ck_price_sync_reviews_schedule",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    route_id: int = Field(foreign_key="routes.id", index=True)
    kind: str = Field(max_length=16)
    schedule_id: int | None = Field(default=None, foreign_key="route_cost_schedules.id")
    # The data's own name for the model it matched (e.g. "gpt-4o-mini"), and the data version.
    matched_model: str = Field(default="", max_length=200)
    data_version: str = Field(max_length=40)
    # The cost the route had (or was scheduled to have) before, and the one proposed, as JSON
    # of integer micros: shown on the admin page and kept for the audit.
    before_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    after_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    losing: bool = Field(default=False)
    loss_mix: str = Field(default="", max_length=200)
    closed: bool = Field(default=False)
    route_was_enabled: bool = Field(default=True)
    status: str = Field(default="pending", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None
    decided_by_label: str = Field(default="", max_length=200)
