"""Who is signed in. Every handler that shows or changes data asks this state, on the server.

The browser holds only a random session token (a cookie); the user is looked up from its hash
on each request, so sign-out and expiry take effect at once.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import reflex as rx
from reflex.event import EventSpec

from creditdash import db
from creditdash.accounts import sessions
from creditdash.settings import get_settings

SESSION_COOKIE = "creditdash_session"
# Where a user signed in with a one-time password chooses their own.
CHANGE_PASSWORD_PATH = "/change-password"  # noqa: S105 (a path)


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


def fresh_start(path: str) -> EventSpec:
    """Navigate with a new client token: the server-side state of this tab (keys shown once,
    request details, billing data of the previous user) is left behind, never shown again."""
    return rx.call_script(
        f"window.sessionStorage.clear(); window.location.replace({json.dumps(path)})"
    )


def _secure_cookie() -> bool:
    """Secure whenever customers reach the dashboard over https (a plain-http localhost
    development setup could not sign in with it)."""
    return get_settings().resolved_public_url().lower().startswith("https://")


class SessionState(rx.State):
    # Set from script: Reflex keeps rx.Cookie values in sync through document.cookie, so this
    # cookie cannot be HttpOnly; see docs/deploy.md, "Session cookie". SameSite=Strict keeps
    # it off cross-site requests; Secure keeps it off plain http when the public URL is https.
    session_token: str = rx.Cookie(
        "",
        name=SESSION_COOKIE,
        same_site="strict",
        secure=_secure_cookie(),
        max_age=get_settings().session_ttl_s,
    )
    user_email: str = ""
    user_name: str = ""
    is_admin: bool = False

    async def _signed_in(self) -> SignedIn | None:
        """The current user, checked against the database (never trusted from the browser)."""
        who = await asyncio.to_thread(_lookup, self.session_token)
        if who is None:
            self.user_email, self.user_name, self.is_admin = "", "", False
        else:
            self.user_email, self.user_name = who.email, who.display_name or who.email
            self.is_admin = who.is_platform_admin
        return who

    async def _pending(self) -> str:
        """The email of a user signed in with a one-time password they must still replace
        ("" otherwise). _signed_in() is None for them: every page and download refuses."""
        return await asyncio.to_thread(_pending_email, self.session_token)

    @rx.event
    async def sign_out(self) -> EventSpec:
        if self.session_token:
            await asyncio.to_thread(_end, self.session_token)
        self.session_token = ""
        self.user_email, self.user_name, self.is_admin = "", "", False
        return fresh_start("/")
