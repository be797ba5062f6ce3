"""Idempotency keys, per customer: the row that is both the lock of a request sent with an
`Idempotency-Key` and, once it ended, the answer a retry with the same key is given.

A row is claimed by one conditional INSERT (checked by its row count), moved to done with the
stored answer by one conditional UPDATE, or deleted (released) when the request charged
nothing, so a retry runs fresh. Rows live 24 h; housekeeping deletes the expired ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Index, LargeBinary, delete, or_, select, update
from sqlmodel import Field, SQLModel

from creditdash.core import db
from creditdash.core.timeutil import utcnow

TTL = timedelta(hours=24)
IN_FLIGHT = "in_flight"
DONE = "done"


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_expires", "expires_at"),)

    customer_id: str = Field(foreign_key="customers.id", primary_key=True, max_length=40)
    key: str = Field(primary_key=True, max_length=255)
    # sha256 over the endpoint and the raw body bytes (hex).
    body_sha256: str = Field(max_length=64)
    request_id: str = Field(default="", max_length=40)
    state: str = Field(default=IN_FLIGHT, max_length=16)
    # The stored answer (done only); body None on a done row: too large to keep, or a stream
    # the client left before its end.
    status: int | None = None
    content_type: str = Field(default="", max_length=100)
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True)
class Row:
    body_sha256: str
    request_id: str
    state: str
    status: int | None
    content_type: str
    body: bytes | None


_T: Any = IdempotencyKey.__table__  # type: ignore[attr-defined]


def _where(customer_id: str, key: str) -> Any:
    return (_T.c.customer_id == customer_id) & (_T.c.key == key)


def claim(
    *, customer_id: str, key: str, body_sha256: str, request_id: str, abandoned_after: timedelta
) -> Row | None:
    """Claim the key for this request: None when claimed, else the row that holds it.

    An expired row, and an in-flight row older than abandoned_after (its process died: its
    hold expired too), are replaced."""
    now = utcnow()
    values = {"customer_id": customer_id, "key": key, "body_sha256": body_sha256,
              "request_id": request_id, "state": IN_FLIGHT, "content_type": "",
              "created_at": now, "expires_at": now + TTL}  # fmt: skip
    for _ in range(3):
        with db.session_scope() as session:
            stale = or_(
                _T.c.expires_at <= now,
                (_T.c.state == IN_FLIGHT) & (_T.c.created_at <= now - abandoned_after),
            )
            session.execute(delete(_T).where(_where(customer_id, key) & stale))
            inserted = len(session.execute(_insert_new(session, values)).all())
            if inserted == 1:
                return None
        found = load(customer_id=customer_id, key=key)
        if found is not None:
            return found
    raise RuntimeError("idempotency key claim did not settle")


def _insert_new(session: Any, values: dict[str, Any]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: one row back when the key was free, none
    when it is held (psycopg does not report this statement's row count reliably)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(_T).values(**values).on_conflict_do_nothing().returning(_T.c.key)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(_T).values(**values).on_conflict_do_nothing().returning(_T.c.key)


def load(*, customer_id: str, key: str) -> Row | None:
    with db.session_scope(readonly=True) as session:
        found = session.execute(
            select(_T.c.body_sha256, _T.c.request_id, _T.c.state, _T.c.status,
                   _T.c.content_type, _T.c.body).where(_where(customer_id, key))
        ).first()  # fmt: skip
    return Row(*found) if found is not None else None


def finish(
    *,
    customer_id: str,
    key: str,
    request_id: str,
    status: int,
    content_type: str,
    body: bytes | None,
) -> bool:
    """Mark the request's claim done with its answer; False when the claim was not its own."""
    with db.session_scope() as session:
        result = session.execute(
            update(_T)
            .where(_where(customer_id, key) & (_T.c.request_id == request_id)
                   & (_T.c.state == IN_FLIGHT))
            .values(state=DONE, status=status, content_type=content_type[:100], body=body)
        )  # fmt: skip
        return bool(getattr(result, "rowcount", 0) == 1)


def release(*, customer_id: str, key: str, request_id: str) -> bool:
    """Delete the request's own in-flight claim (it charged nothing: a retry runs fresh)."""
    with db.session_scope() as session:
        result = session.execute(
            delete(_T).where(_where(customer_id, key) & (_T.c.request_id == request_id)
                             & (_T.c.state == IN_FLIGHT))
        )  # fmt: skip
        return bool(getattr(result, "rowcount", 0) == 1)


def delete_expired(limit: int = 1000) -> int:
    """Delete up to limit expired rows; the count deleted."""
    with db.session_scope() as session:
        keys = session.execute(
            select(_T.c.customer_id, _T.c.key).where(_T.c.expires_at <= utcnow()).limit(limit)
        ).all()
        deleted = 0
        for customer_id, key in keys:
            result = session.execute(
                delete(_T).where(_where(customer_id, key) & (_T.c.expires_at <= utcnow()))
            )
            deleted += int(getattr(result, "rowcount", 0))
        return deleted
