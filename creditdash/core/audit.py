"""The audit log: every administrative action, with before and after."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Text, or_, select
from sqlmodel import Field, Session, SQLModel, col

from creditdash.core.errors import ValidationFailed
from creditdash.core.timeutil import utcnow

MAX_PAGE_SIZE = 200
MAX_PAGE = 10_000
MAX_SEARCH = 100


class AuditEntry(SQLModel, table=True):
    """Who did what to which object, with the state before and after, and why."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target", "target_type", "target_id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor_user_id: int | None = Field(default=None, foreign_key="users.id")
    # "user:<email>", "cli" or "system": readable even after a user is gone.
    actor_label: str = Field(max_length=340)
    action: str = Field(max_length=80)
    target_type: str = Field(max_length=40)
    target_id: str = Field(max_length=80)
    before_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    after_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    reason: str = Field(default="", max_length=500)


@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in user, the operator's command line, or the system itself."""

    label: str
    user_id: int | None = None

    @classmethod
    def user(cls, user_id: int, email: str) -> Actor:
        return cls(label=f"user:{email}", user_id=user_id)


CLI = Actor(label="cli")
SYSTEM = Actor(label="system")


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str = "",
) -> AuditEntry:
    entry = AuditEntry(
        actor_user_id=actor.user_id,
        actor_label=actor.label,
        action=action,
        target_type=target_type,
        target_id=target_id,
        before_json=_dump(before),
        after_json=_dump(after),
        reason=reason[:500],
    )
    session.add(entry)
    return entry


def _dump(value: dict[str, Any] | None) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, default=str)


@dataclass(frozen=True)
class AuditFilters:
    """search: part of the action, target id or actor (case-insensitive); the others exact."""

    search: str = ""
    action: str = ""
    target_type: str = ""
    target_id: str = ""


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_entries(
    session: Session,
    *,
    filters: AuditFilters | None = None,
    page: int = 1,
    page_size: int = MAX_PAGE_SIZE,
) -> list[AuditEntry]:
    """One page of the audit log, newest first, matching the filters."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationFailed(f"page size must be 1-{MAX_PAGE_SIZE}")
    page = min(max(1, page), MAX_PAGE)
    filters = filters or AuditFilters()
    conditions = []
    search = filters.search.strip()[:MAX_SEARCH]
    if search:
        like = f"%{_escape_like(search)}%"
        conditions.append(
            or_(
                col(AuditEntry.action).ilike(like, escape="\\"),
                col(AuditEntry.target_id).ilike(like, escape="\\"),
                col(AuditEntry.actor_label).ilike(like, escape="\\"),
            )
        )
    if filters.action:
        conditions.append(col(AuditEntry.action) == filters.action)
    if filters.target_type:
        conditions.append(col(AuditEntry.target_type) == filters.target_type)
    if filters.target_id:
        conditions.append(col(AuditEntry.target_id) == filters.target_id)
    query = (
        select(AuditEntry)
        .where(*conditions)
        .order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    )
    return list(session.execute(query).scalars())
