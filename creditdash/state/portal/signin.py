"""The sign-in form."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import sessions
from creditdash.core.errors import AuthenticationFailed
from creditdash.core.settings import get_settings
from creditdash.routes import CHANGE_PASSWORD_PATH, invite_page
from creditdash.state.base import SessionState, cookie_then


def _sign_in(email: str, password: str, address: str) -> sessions.SignedInResult:
    ttl = timedelta(seconds=get_settings().session_ttl_s)
    return sessions.sign_in(email=email, password=password, ttl=ttl, address=address)


class SignInState(SessionState):
    error: str = ""
    notice: str = ""
    submitting: bool = False

    def _invite_page(self) -> str:
        """Where to go back to when sign-in was opened from an invitation (/?invite=TOKEN):
        only the invitation page of a well-formed token, never an address from the query."""
        token = str(self.router.url.query_parameters.get("invite") or "")
        page = invite_page(token)
        return page if page != "/" else ""

    @rx.event
    async def redirect_if_signed_in(self) -> EventSpec | None:
        reset_done = self.router.url.query_parameters.get("reset") == "done"
        self.notice = "Your password was changed. Sign in with the new one." if reset_done else ""
        who = await self._signed_in()
        if who is None:
            return rx.redirect(CHANGE_PASSWORD_PATH) if await self._pending() else None
        back = self._invite_page()
        return rx.redirect(back or ("/admin" if who.is_platform_admin else "/home"))

    @rx.event
    async def sign_in(self, form_data: dict[str, str]) -> EventSpec | None:
        self.error = ""
        email = str(form_data.get("email", ""))
        password = str(form_data.get("password", ""))
        # The socket's peer address (X-Forwarded-For only through Reflex's trusted_proxy_hops).
        address = self.router.session.client_ip
        try:
            signed = await asyncio.to_thread(_sign_in, email, password, address)
        except AuthenticationFailed as exc:
            self.error = exc.message
            return None
        if signed.must_change_password:
            return await cookie_then(signed.token, CHANGE_PASSWORD_PATH)
        back = self._invite_page()
        return await cookie_then(
            signed.token, back or ("/admin" if signed.user.is_platform_admin else "/home")
        )
