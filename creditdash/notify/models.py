"""Webhook tables: a workspace's endpoints, one delivery per (endpoint, event), its attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from creditdash.core.timeutil import utcnow

DELIVERY_STATUSES = ("pending", "delivered", "failed")


class WebhookEndpoint(SQLModel, table=True):
    """A URL a workspace wants its events POSTed to. `secret` is the signing secret encrypted
    at rest (core/crypto); the plain secret is shown once, when it is made."""

    __tablename__ = "webhook_endpoints"

    id: str = Field(primary_key=True, max_length=40)
    customer_id: str = Field(foreign_key="customers.id", index=True, max_length=40)
    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=200)
    secret: str = Field(sa_column=Column(Text, nullable=False))
    event_types_json: str = Field(sa_column=Column(Text, nullable=False))
    enabled: bool = True
    disabled_reason: str = Field(default="", max_length=300)
    consecutive_failures: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    created_by_user_id: int | None = Field(default=None, foreign_key="users.id")


class WebhookDelivery(SQLModel, table=True):
    """One event to one endpoint. The id is the Standard Webhooks `webhook-id`: the same on
    every retry and resend, so a receiver can drop duplicates."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    endpoint_id: str = Field(foreign_key="webhook_endpoints.id", index=True, max_length=40)
    event_id: str = Field(foreign_key="events.id", max_length=40)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_status_code: int | None = None
    last_error: str = Field(default="", max_length=500)
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class WebhookAttempt(SQLModel, table=True):
    """One HTTP attempt of a delivery, for the delivery log."""

    __tablename__ = "webhook_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="webhook_deliveries.id", index=True, max_length=40)
    at: datetime = Field(default_factory=utcnow)
    status_code: int | None = None
    error: str = Field(default="", max_length=500)
    duration_ms: int = 0
