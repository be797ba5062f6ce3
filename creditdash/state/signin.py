"""The sign-in form."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import sessions
from creditdash.errors import AuthenticationFailed
from creditdash.settings import get_settings
from creditdash.state.session import SessionState, fresh_start


def _sign_in(email: str, password: str) -> tuple[str, bool]:
    ttl = timedelta(seconds=get_settings().session_ttl_s)
    user, token = sessions.sign_in(email=email, password=password, ttl=ttl)
    return token, user.is_platform_admin


class SignInState(SessionState):
    error: str = ""
    submitting: bool = False

    @rx.event
    async def redirect_if_signed_in(self) -> EventSpec | None:
        who = await self._signed_in()
        if who is None:
            return None
        return rx.redirect("/admin" if who.is_platform_admin else "/home")

    @rx.event
    async def sign_in(self, form_data: dict[str, str]) -> EventSpec | None:
        self.error = ""
        email = str(form_data.get("email", ""))
        password = str(form_data.get("password", ""))
        try:
            token, is_admin = await asyncio.to_thread(_sign_in, email, password)
        except AuthenticationFailed as exc:
            self.error = exc.message
            return None
        self.session_token = token
        return fresh_start("/admin" if is_admin else "/home")
