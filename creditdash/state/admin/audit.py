"""The audit log: who changed what, searchable.

Every handler is an @admin_event: the admin role is checked on the server first (state/base.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.core import audit, db
from creditdash.core.audit import Actor
from creditdash.state.base import AdminBase, admin_event


class AuditRow(TypedDict):
    at: str
    actor: str
    action: str
    target: str
    before: str
    after: str
    reason: str


def _audit(search: str) -> list[AuditRow]:
    with db.session_scope(readonly=True) as session:
        found = audit.list_entries(session, filters=audit.AuditFilters(search=search))
        return [
            AuditRow(
                at=e.at.strftime("%Y-%m-%d %H:%M:%S"),
                actor=e.actor_label,
                action=e.action,
                target=f"{e.target_type} {e.target_id}",
                before=_compact(e.before_json),
                after=_compact(e.after_json),
                reason=e.reason,
            )
            for e in found
        ]


def _compact(value: str | None) -> str:
    if not value:
        return ""
    data = json.loads(value)
    return ", ".join(f"{k}={v}" for k, v in data.items()) if isinstance(data, dict) else value


class AdminAuditState(AdminBase):
    entries: list[AuditRow] = []
    search: str = ""

    @rx.event
    @admin_event
    async def load(self, actor: Actor) -> EventSpec | None:
        self.entries = await asyncio.to_thread(_audit, self.search)
        return None

    @rx.event
    @admin_event
    async def set_search(self, actor: Actor, value: str) -> EventSpec | None:
        self.search = value[:100]
        self.entries = await asyncio.to_thread(_audit, self.search)
        return None
