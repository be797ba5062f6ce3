"""Runtime settings, read once from the environment (prefix CREDITDASH_).

Stripe's two variables keep their conventional names without the prefix.
"""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "development", "dev"}
MIN_SECRET_KEY_CHARS = 32


# A request ends this long before its hold expires, so the hold always covers it.
HOLD_MARGIN_S = 60
MIN_HOLD_TTL_S = HOLD_MARGIN_S + 30


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDITDASH_", extra="ignore")

    environment: str = "development"
    database_url: str = "sqlite:///creditdash.db"
    data_dir: Path = Path("data")
    secret_key: str = ""
    port: int = 3000
    public_url: str = ""
    max_body_bytes: int = 10 * 1024 * 1024
    # The browser origins allowed on the gateway's /v1 paths (comma-separated; "*": any).
    cors_origins: str = "*"
    allow_private_upstreams: bool = False
    sandbox_webhook_secret: str = ""
    session_ttl_s: int = 7 * 24 * 3600
    # An invitation link (accounts/invites.py) stops working after this long.
    invite_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    # A one-time password from `creditdash users set-password --temporary` stops working after
    # this long. (Its first name, from one-time-password invitations, is still read.)
    one_time_password_ttl_s: int = Field(
        default=72 * 3600,
        gt=0,
        validation_alias=AliasChoices(
            "CREDITDASH_ONE_TIME_PASSWORD_TTL_S", "CREDITDASH_INVITE_PASSWORD_TTL_S"
        ),
    )
    # Where sign-in failures are counted and the gateway's per-key rate and concurrency limits
    # kept, across processes; without it each process keeps its own. The dashboard's
    # REFLEX_REDIS_URL is used when this is not set.
    redis_url: str = Field(
        default="", validation_alias=AliasChoices("CREDITDASH_REDIS_URL", "REFLEX_REDIS_URL")
    )
    # With Redis: a request's concurrency slot is a lease renewed while it runs; the slots of a
    # process that died come free this long after its last renewal.
    limit_lease_ttl_s: int = Field(default=30, ge=1, le=3600)
    # Outgoing mail: smtp://user:pass@host:587 (STARTTLS when the server offers it), smtps://
    # for TLS from the start. Without it mail stays in the outbox, shown in the admin workspace.
    smtp_url: str = ""
    mail_from: str = "creditdash <no-reply@localhost>"
    hold_ttl_s: int = 15 * 60
    hold_expiry_interval_s: int = 30
    # Stored Responses-API answers are kept this long (OpenAI keeps them 30 days), then purged.
    responses_retention_days: int = Field(default=30, ge=1, le=3650)
    # Payments. Orders open for checkout expire after checkout_expiry_s (Stripe allows < 24 h).
    checkout_expiry_s: int = 23 * 3600
    manual_order_expiry_days: int = 30
    # The published refund policy: money back within refund_window_days of payment; by default
    # only for credits of that order the customer has not used.
    refund_window_days: int = 14
    refund_consumed_credits: bool = False
    terms_version: str = "2026-11-01"
    # The built-in sandbox takes test payments that credit real balances: on by default only in
    # development; elsewhere only when this is set to true.
    sandbox_payments: bool | None = None
    # `prices sync`: a route the margin review flags (its new cost above the model's price, or
    # a model the bundled price data does not know) is closed to traffic until an admin accepts
    # ("close"), or only flagged on the admin prices page ("flag").
    price_sync_gate: Literal["close", "flag"] = "close"
    # Credits one US dollar of upstream cost is worth: turns the price data's and the providers'
    # cost reports' USD into route costs in micros of a credit (1: a credit is a dollar).
    price_sync_credits_per_usd: Decimal = Field(default=Decimal(1), gt=0, le=1_000_000)
    # `upstream reconcile`: a day and model whose reported and recorded costs differ by more
    # than this many micros is shown as a difference.
    reconcile_tolerance_micros: int = Field(default=10_000, ge=0)
    # GET /metrics in Prometheus' text format (docs/deploy.md, "Metrics"): 404 unless enabled;
    # with a token, only `Authorization: Bearer <token>` may scrape.
    metrics_enabled: bool = False
    metrics_token: str = ""
    # Pools (docs/deploy.md, "Pools"). The PostgreSQL pool of each process's engine (SQLite
    # keeps SQLAlchemy's own), and the connections the gateway's metering threads keep open.
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    db_max_overflow: int = Field(default=20, ge=0, le=1000)
    db_pool_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    db_metering_connections: int = Field(default=2, ge=1, le=64)
    # The gateway's upstream connections per process: open at most, and kept idle at most.
    upstream_max_connections: int = Field(default=1000, ge=1, le=100_000)
    upstream_max_idle_connections: int = Field(default=200, ge=0, le=100_000)
    # Where Stripe's API lives; only tests and Stripe-compatible mocks change it.
    stripe_api_base: str = ""
    stripe_secret_key: str = Field(
        default="",
        validation_alias=AliasChoices("STRIPE_SECRET_KEY", "CREDITDASH_STRIPE_SECRET_KEY"),
    )
    stripe_webhook_secret: str = Field(
        default="",
        validation_alias=AliasChoices("STRIPE_WEBHOOK_SECRET", "CREDITDASH_STRIPE_WEBHOOK_SECRET"),
    )

    @field_validator("hold_ttl_s")
    @classmethod
    def _hold_outlives_its_request(cls, value: int) -> int:
        # A request (all attempts, a whole stream) is cut 60 s before its hold expires, and gets
        # at least 30 s; below 90 s it could outlive its hold and spend credit released meanwhile.
        if value < MIN_HOLD_TTL_S:
            raise ValueError(
                f"CREDITDASH_HOLD_TTL_S must be at least {MIN_HOLD_TTL_S} seconds: requests are "
                f"cut {HOLD_MARGIN_S} s before their hold expires and need 30 s at least"
            )
        return value

    @field_validator("upstream_max_idle_connections")
    @classmethod
    def _idle_within_open(cls, value: int, info: ValidationInfo) -> int:
        most = info.data.get("upstream_max_connections")
        if most is not None and value > most:
            raise ValueError(
                "CREDITDASH_UPSTREAM_MAX_IDLE_CONNECTIONS cannot exceed "
                f"CREDITDASH_UPSTREAM_MAX_CONNECTIONS ({most})"
            )
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key_is_real(cls, value: str) -> str:
        if value and (len(value) < MIN_SECRET_KEY_CHARS or value.lower() in _PLACEHOLDER_SECRETS):
            raise ValueError(
                f"CREDITDASH_SECRET_KEY must be at least {MIN_SECRET_KEY_CHARS} characters "
                "and not a placeholder"
            )
        return value

    @property
    def stripe_enabled(self) -> bool:
        return bool(self.stripe_secret_key)

    @property
    def sandbox_enabled(self) -> bool:
        return self.is_development if self.sandbox_payments is None else self.sandbox_payments

    def resolved_public_url(self) -> str:
        """The base URL customers reach the dashboard at (checkout return pages point here)."""
        return (self.public_url or f"http://localhost:{self.port}").rstrip("/")

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    def resolved_secret_key(self) -> str:
        """The configured secret, or in development one generated once into the data folder."""
        if self.secret_key:
            return self.secret_key
        if not self.is_development:
            raise RuntimeError("CREDITDASH_SECRET_KEY is required outside development")
        return _file_secret(self.data_dir / "secret_key")

    def resolved_sandbox_webhook_secret(self) -> str:
        if self.sandbox_webhook_secret:
            return self.sandbox_webhook_secret
        return "whsec_" + _file_secret(self.data_dir / "sandbox_webhook_secret")


def _file_secret(path: Path) -> str:
    """Read a generated secret, creating it (mode 0600) on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # O_EXCL: when two processes race, the loser reads the winner's value.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment)."""
    get_settings.cache_clear()
