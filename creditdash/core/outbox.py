"""The outbox: events and emails written in the transaction of what caused them.

A service that changes something a customer should hear about (a payment credited, an invoice
issued, a key revoked, a budget crossed) calls emit() in its own transaction, so the event
exists if and only if the change committed. Nothing here sends anything: the notify layer reads
the rows later (in the jobs loop), turns events into emails for the workspace's members and into
signed deliveries to its webhook endpoints, and sends the emails queued with enqueue_mail().
A send that fails is retried; a row is never deleted before it was delivered, so no message is
lost because a mail server or a receiver was down.

Both writes are idempotent by an optional dedupe key (INSERT ... ON CONFLICT DO NOTHING
RETURNING): a threshold alert keyed by workspace, period and threshold is written once however
many requests cross it together.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel

from creditdash.core.errors import ValidationFailed
from creditdash.core.ids import new_id
from creditdash.core.timeutil import utcnow

# The events a workspace's webhook endpoints can subscribe to (issue 18's list).
WEBHOOK_EVENT_TYPES = (
    "balance.low",
    "budget.threshold",
    "payment.succeeded",
    "invoice.issued",
    "refund.succeeded",
    "key.created",
    "key.revoked",
    "autotopup.failed",
    "autotopup.paused",
)
MAIL_STATUSES = ("pending", "sent", "failed")
MAX_SUBJECT = 300


class Event(SQLModel, table=True):
    """Something that happened to a workspace. `mailed_at` and `hooked_at` mark that the
    notify layer made this event's emails and webhook deliveries (each exactly once)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_unmailed", "mailed_at"),
        Index("ix_events_unhooked", "hooked_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    customer_id: str | None = Field(
        default=None, foreign_key="customers.id", index=True, max_length=40
    )
    type: str = Field(max_length=64)
    data_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)
    mailed_at: datetime | None = None
    hooked_at: datetime | None = None

    def data(self) -> dict[str, Any]:
        loaded = json.loads(self.data_json)
        assert isinstance(loaded, dict)
        return loaded


class OutboxMail(SQLModel, table=True):
    """One email to one address, kept until it is sent (or shown as failed, never dropped)."""

    __tablename__ = "outbox_mail"
    __table_args__ = (Index("ix_outbox_mail_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str | None = Field(default=None, foreign_key="customers.id", max_length=40)
    event_id: str | None = Field(default=None, foreign_key="events.id", max_length=40)
    # What it is: "invite", "password_reset", or the event type it tells of.
    kind: str = Field(max_length=64)
    to_addr: str = Field(max_length=320)
    subject: str = Field(max_length=MAX_SUBJECT)
    body_text: str = Field(sa_column=Column(Text, nullable=False))
    # A document the sender attaches when it sends, e.g. "invoice:<number>".
    attachment: str | None = Field(default=None, max_length=120)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_error: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)


def _insert_once(session: Session, table: Any, values: dict[str, Any]) -> Any:
    """Insert a row unless its unique dedupe key is taken; the new row's id, or None."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(table.c.id)
    )
    return session.execute(statement).scalar_one_or_none()


def emit(
    session: Session,
    *,
    type: str,
    customer_id: str | None,
    data: dict[str, Any],
    dedupe_key: str | None = None,
) -> str | None:
    """Record an event in the caller's transaction; its id, or None when an event with this
    dedupe key was already recorded (the caller then has nothing to tell)."""
    if not type or len(type) > 64:
        raise ValidationFailed("an event type is 1-64 characters")
    event_id = new_id("evt")
    values = {
        "id": event_id,
        "customer_id": customer_id,
        "type": type,
        "data_json": json.dumps(data, sort_keys=True, default=str),
        "created_at": utcnow(),
        "dedupe_key": dedupe_key,
        "mailed_at": None,
        "hooked_at": None,
    }
    inserted = _insert_once(session, Event.__table__, values)  # type: ignore[attr-defined]
    return str(inserted) if inserted is not None else None


def enqueue_mail(
    session: Session,
    *,
    to: str,
    subject: str,
    text: str,
    kind: str,
    customer_id: str | None = None,
    event_id: str | None = None,
    attachment: str | None = None,
    dedupe_key: str | None = None,
) -> int | None:
    """Queue one email in the caller's transaction; its id, or None for a dedupe key already
    queued. The address is taken as given: callers pass normalized addresses."""
    if not to or "@" not in to or len(to) > 320:
        raise ValidationFailed("an email needs a valid address")
    subject = " ".join(subject.split())[:MAX_SUBJECT]
    now = utcnow()
    values = {
        "customer_id": customer_id,
        "event_id": event_id,
        "kind": kind[:64],
        "to_addr": to,
        "subject": subject,
        "body_text": text,
        "attachment": attachment,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": "",
        "created_at": now,
        "sent_at": None,
        "dedupe_key": dedupe_key,
    }
    inserted = _insert_once(session, OutboxMail.__table__, values)  # type: ignore[attr-defined]
    return int(inserted) if inserted is not None else None
