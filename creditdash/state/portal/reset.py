"""Forgotten passwords: ask for a reset link by email, then choose a new password with it.

Both pages are for signed-out visitors, so the states derive from SessionState and need no
workspace guard: asking for a link reveals nothing (the same answer for every address), and
setting a password needs the link's token, which the service checks.
"""

from __future__ import annotations

import asyncio
import logging

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import password_reset
from creditdash.core import db
from creditdash.core.errors import CreditdashError
from creditdash.routes import RESET_DONE_PATH
from creditdash.state.base import SessionState

log = logging.getLogger(__name__)

SENT = "If an account exists for that address, we sent a link; it works for one hour."


def _request(email: str) -> None:
    with db.session_scope() as session:
        password_reset.request_reset(session, email)


def _reset(token: str, password: str) -> None:
    with db.session_scope() as session:
        password_reset.reset_password(session, token, password)


class ForgotPasswordState(SessionState):
    notice: str = ""

    @rx.event
    async def request_link(self, form_data: dict[str, str]) -> None:
        try:
            await asyncio.to_thread(_request, str(form_data.get("email", ""))[:320])
        except Exception:
            # Logged for the operator; the visitor sees the same answer as for any address,
            # so a failure reveals nothing about which addresses have accounts.
            log.exception("password reset request failed")
        self.notice = SENT


class ResetPasswordState(SessionState):
    error: str = ""

    @rx.event
    async def set_new_password(self, form_data: dict[str, str]) -> EventSpec | None:
        self.error = ""
        password = str(form_data.get("password", ""))
        if password != str(form_data.get("confirm", "")):
            self.error = "The two passwords differ."
            return None
        # Read from the address the page was opened with, never kept in the page's state.
        token = self.router.url.query_parameters.get("token", "")
        try:
            await asyncio.to_thread(_reset, token, password)
        except CreditdashError as exc:
            self.error = exc.message
            return None
        return rx.redirect(RESET_DONE_PATH)
