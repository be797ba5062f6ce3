"""The audit log: every administrative action, with before and after."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from creditdash.accounts.models import AuditEntry


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
