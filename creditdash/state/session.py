"""Who is signed in. Every handler that shows or changes data asks this state, on the server.

The browser holds only a random session token, in an HttpOnly cookie that script cannot read
(set and cleared by web/auth.py). The browser sends it with the websocket
handshake; Reflex keeps that request's headers on the server (router.headers, never sent to the
page), and the user is looked up from the token's hash on each event, so sign-out and expiry
take effect at once.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import sessions
from creditdash.core import db
from creditdash.routes import SIGN_OUT_PATH, handoff_url

SESSION_COOKIE = sessions.SESSION_COOKIE
# Where a user signed in with a one-time password chooses their own.


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    email: str
    display_name: str
    is_platform_admin: bool


def _lookup(token: str) -> SignedIn | None:
    with db.session_scope(readonly=True) as session:
        user = sessions.user_for_token(session, token)
        if user is None or user.id is None:
            return None
        return SignedIn(user.id, user.email, user.display_name, user.is_platform_admin)


def _pending_email(token: str) -> str:
    with db.session_scope(readonly=True) as session:
        user = sessions.pending_user_for_token(session, token)
        return user.email if user is not None and user.must_change_password else ""


def _end(token: str) -> None:
    with db.session_scope() as session:
        sessions.end_session(session, token)


def _hand_off(token: str) -> str:
    with db.session_scope() as session:
        return sessions.hand_off(session, token)


async def cookie_then(token: str, next_page: str) -> EventSpec:
    """Leave this tab's state behind and have the browser trade a handoff code for the
    session's HttpOnly cookie, then open next_page."""
    code = await asyncio.to_thread(_hand_off, token)
    return fresh_start(handoff_url(code, next_page))


def fresh_start(path: str) -> EventSpec:
    """Navigate with a new client token: the server-side state of this tab (keys shown once,
    request details, billing data of the previous user) is left behind, never shown again."""
    return rx.call_script(
        f"window.sessionStorage.clear(); window.location.replace({json.dumps(path)})"
    )


class SessionState(rx.State):
    user_email: str = ""
    user_name: str = ""
    is_admin: bool = False

    def _session_token(self) -> str:
        """The session cookie as the browser sent it with this connection's handshake."""
        return sessions.token_from_cookie_header(self.router.headers.cookie)

    async def _signed_in(self) -> SignedIn | None:
        """The current user, checked against the database (never trusted from the browser)."""
        who = await asyncio.to_thread(_lookup, self._session_token())
        if who is None:
            self.user_email, self.user_name, self.is_admin = "", "", False
        else:
            self.user_email, self.user_name = who.email, who.display_name or who.email
            self.is_admin = who.is_platform_admin
        return who

    async def _pending(self) -> str:
        """The email of a user signed in with a one-time password they must still replace
        ("" otherwise). _signed_in() is None for them: every page and download refuses."""
        return await asyncio.to_thread(_pending_email, self._session_token())

    @rx.event
    async def sign_out(self) -> EventSpec:
        if token := self._session_token():
            await asyncio.to_thread(_end, token)
        self.user_email, self.user_name, self.is_admin = "", "", False
        # The response of this address clears the cookie (script cannot).
        return fresh_start(SIGN_OUT_PATH)
