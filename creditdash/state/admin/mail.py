"""The development inbox: every email in the outbox, its body, and a retry.

Without CREDITDASH_SMTP_URL this is where mail is read (nothing leaves the machine); with it,
the page shows what was sent and what failed. Every handler is an @admin_event: the admin
role is checked on the server first (state/base.py).
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.errors import NotFound
from creditdash.core.outbox import MAIL_STATUSES
from creditdash.notify import mail
from creditdash.state.base import AdminBase, admin_event, with_session


class MailRow(TypedDict):
    id: int
    to: str
    subject: str
    kind: str
    status: str
    attempts: int
    last_error: str
    created: str
    sent: str


def _rows(status: str) -> list[MailRow]:
    with db.session_scope(readonly=True) as session:
        found = mail.outbox(session, status=status or None, limit=200)
        return [
            MailRow(
                id=r.id or 0,
                to=r.to_addr,
                subject=r.subject,
                kind=r.kind,
                status=r.status,
                attempts=r.attempts,
                last_error=r.last_error,
                created=r.created_at.strftime("%Y-%m-%d %H:%M"),
                sent=r.sent_at.strftime("%Y-%m-%d %H:%M") if r.sent_at else "",
            )
            for r in found
        ]


def _body(mail_id: int) -> tuple[str, str]:
    with db.session_scope(readonly=True) as session:
        row = mail.get(session, mail_id)
        attached = f"\n\n[attachment: {row.attachment}]" if row.attachment else ""
        return row.subject, row.body_text + attached


class AdminMailState(AdminBase):
    rows: list[MailRow] = []
    status: str = ""
    smtp_configured: bool = False
    viewing_subject: str = ""
    viewing_body: str = ""
    viewing: bool = False

    async def _reload(self) -> None:
        self.smtp_configured = mail.is_configured()
        self.rows = await asyncio.to_thread(_rows, self.status)

    @rx.event
    @admin_event
    async def load(self, actor: Actor) -> EventSpec | None:
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def filter_status(self, actor: Actor, value: str) -> EventSpec | None:
        self.status = value if value in MAIL_STATUSES else ""
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def show(self, actor: Actor, mail_id: int) -> EventSpec | None:
        self.admin_error = ""
        try:
            self.viewing_subject, self.viewing_body = await asyncio.to_thread(_body, mail_id)
        except NotFound as exc:
            self.admin_error = exc.message
            return None
        self.viewing = True
        return None

    @rx.event
    @admin_event
    async def hide(self, actor: Actor) -> EventSpec | None:
        self.viewing, self.viewing_subject, self.viewing_body = False, "", ""
        return None

    @rx.event
    @admin_event
    async def retry(self, actor: Actor, mail_id: int) -> EventSpec | None:
        await self._run(
            with_session(lambda s: mail.retry_now(s, mail_id)),
            "Queued: the sender tries it on its next pass.",
        )
        await self._reload()
        return None
