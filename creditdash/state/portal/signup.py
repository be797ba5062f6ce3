"""Sign-up: a new user with their own workspace, signed in at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import sessions
from creditdash.billing import onboarding
from creditdash.core import db
from creditdash.core.errors import CreditdashError
from creditdash.core.settings import get_settings
from creditdash.state.base import SessionState, cookie_then


def _sign_up(form: dict[str, str]) -> str:
    ttl = timedelta(seconds=get_settings().session_ttl_s)
    with db.session_scope() as session:
        user, _customer = onboarding.sign_up(
            session,
            email=form.get("email", ""),
            password=form.get("password", ""),
            workspace_name=form.get("workspace", ""),
            display_name=form.get("name", ""),
        )
        assert user.id is not None
        return sessions.start_session(session, user_id=user.id, ttl=ttl)


class SignUpState(SessionState):
    error: str = ""

    @rx.event
    async def sign_up(self, form: dict[str, str]) -> EventSpec | None:
        self.error = ""
        if form.get("password") != form.get("confirm_password"):
            self.error = "The passwords do not match."
            return None
        try:
            token = await asyncio.to_thread(_sign_up, form)
        except CreditdashError as exc:
            self.error = exc.message
            return None
        return await cookie_then(token, "/home")
