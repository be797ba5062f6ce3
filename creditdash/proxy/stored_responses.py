"""Stored Responses-API answers, per customer: what GET /v1/responses/{id} returns, and the
conversation a later request continues with previous_response_id.

A stored response keeps the response object as the client got it (cost included) and the
conversation that led to it, in Responses items: the history it continued, the request's
input and the answer's output. Ownership is part of every lookup: another customer's id is
not found, exactly like an unknown one. A response older than the retention
(CREDITDASH_RESPONSES_RETENTION_DAYS) is not found either, and housekeeping deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Column, Index, Text, delete, select
from sqlmodel import Field, SQLModel, col

from creditdash.core import db
from creditdash.core.settings import get_settings
from creditdash.core.timeutil import utcnow

# A response id the gateway could have issued: "resp_" and 26 base32 characters.
MAX_ID_CHARS = 40


class StoredResponse(SQLModel, table=True):
    __tablename__ = "stored_responses"
    __table_args__ = (Index("ix_stored_responses_customer_created", "customer_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=40)
    customer_id: str = Field(foreign_key="customers.id", max_length=40)
    # The request that produced it (its usage record).
    request_id: str = Field(default="", max_length=40)
    created_at: datetime = Field(default_factory=utcnow)
    # The response object as sent (JSON), and the conversation items (a JSON list).
    response_json: str = Field(sa_column=Column(Text, nullable=False))
    conversation_json: str = Field(sa_column=Column(Text, nullable=False))


@dataclass(frozen=True)
class Found:
    response: bytes
    conversation: list[dict[str, Any]]


def save(
    *,
    response_id: str,
    customer_id: str,
    request_id: str,
    response: bytes,
    conversation: list[dict[str, Any]],
) -> None:
    with db.session_scope() as session:
        session.add(
            StoredResponse(
                id=response_id,
                customer_id=customer_id,
                request_id=request_id,
                response_json=response.decode(),
                conversation_json=orjson.dumps(conversation).decode(),
            )
        )


def load(*, customer_id: str, response_id: str) -> Found | None:
    """The customer's stored response, or None (unknown, or another customer's)."""
    if not 0 < len(response_id) <= MAX_ID_CHARS:
        return None
    with db.session_scope(readonly=True) as session:
        row = session.get(StoredResponse, response_id)
        if row is None or row.customer_id != customer_id or row.created_at < _kept_since():
            return None
        return Found(row.response_json.encode(), orjson.loads(row.conversation_json))


def remove(*, customer_id: str, response_id: str) -> bool:
    """Delete the customer's stored response; False when there was none to delete."""
    if not 0 < len(response_id) <= MAX_ID_CHARS:
        return False
    with db.session_scope() as session:
        result = session.execute(
            delete(StoredResponse).where(
                StoredResponse.id == response_id,  # type: ignore[arg-type]
                StoredResponse.customer_id == customer_id,  # type: ignore[arg-type]
            )
        )
        return bool(getattr(result, "rowcount", 0))


def _kept_since() -> datetime:
    return utcnow() - timedelta(days=get_settings().responses_retention_days)


def purge_expired(limit: int = 1000) -> int:
    """Delete up to limit stored responses older than the retention; how many went."""
    with db.session_scope() as session:
        old = select(col(StoredResponse.id)).where(col(StoredResponse.created_at) < _kept_since())
        ids = list(session.execute(old.limit(limit)).scalars())
        if not ids:
            return 0
        session.execute(delete(StoredResponse).where(col(StoredResponse.id).in_(ids)))
        return len(ids)
