"""Account: change the password (invitations are on the Team page, state/portal/team.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import sessions
from creditdash.core import db
from creditdash.core.errors import CreditdashError
from creditdash.core.settings import get_settings
from creditdash.routes import SIGN_IN_PATH, SIGN_OUT_PATH
from creditdash.state.base import (
    PortalState,
    SessionState,
    Workspace,
    cookie_then,
    fresh_start,
    workspace_event,
)


def _change(user_id: int, current: str, new: str) -> None:
    with db.session_scope() as session:
        sessions.change_password(
            session, user_id=user_id, current_password=current, new_password=new
        )


def _replace_one_time(token: str, current: str, new: str) -> str:
    ttl = timedelta(seconds=get_settings().session_ttl_s)
    return sessions.replace_one_time_password(
        token=token, current_password=current, new_password=new, ttl=ttl
    )


class FirstPasswordState(SessionState):
    """The one page a user signed in with a one-time password can use: choosing their own."""

    first_password_error: str = ""
    pending_email: str = ""

    @rx.event
    async def load(self) -> EventSpec | None:
        self.first_password_error = ""
        self.pending_email = await self._pending()
        if self.pending_email:
            return None
        return rx.redirect("/home" if await self._signed_in() else SIGN_IN_PATH)

    @rx.event
    async def set_first_password(self, form: dict[str, str]) -> EventSpec | None:
        self.first_password_error = ""
        if form.get("new_password") != form.get("confirm_password"):
            self.first_password_error = "The new passwords do not match."  # noqa: S105
            return None
        try:
            token = await asyncio.to_thread(
                _replace_one_time,
                self._session_token(),
                str(form.get("current_password") or ""),
                str(form.get("new_password") or ""),
            )
        except CreditdashError as exc:
            self.first_password_error = exc.message
            return None
        return await cookie_then(token, "/home")


class AccountState(PortalState):
    password_error: str = ""

    @rx.event
    @workspace_event(clearing=("password_error",))
    async def load(self, _where: Workspace) -> EventSpec | None:
        return None

    @rx.event
    @workspace_event(clearing=("password_error",))
    async def change_password(self, where: Workspace, form: dict[str, str]) -> EventSpec | None:
        if form.get("new_password") != form.get("confirm_password"):
            self.password_error = "The new passwords do not match."  # noqa: S105 (a message)
            return None
        try:
            await asyncio.to_thread(
                _change,
                where.user.user_id,
                form.get("current_password", ""),
                form.get("new_password", ""),
            )
        except CreditdashError as exc:
            self.password_error = exc.message
            return None
        # Every session ended with the change, this one too: clear the cookie, sign in again.
        return fresh_start(SIGN_OUT_PATH)
