"""The invitation page (/invite?token=...): open to visitors, since the link itself is what is
checked. It shows the workspace and role and offers what fits who is looking: Accept for the
invited account signed in, a create-account form for an address with no account, a sign-in
prompt that comes back here for an existing account, and a clear refusal for anyone else."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import invites, roles, sessions
from creditdash.core import db
from creditdash.core.errors import CreditdashError
from creditdash.core.settings import get_settings
from creditdash.routes import SIGN_IN_PATH
from creditdash.state.base import PortalState, SessionState, cookie_then


def _view(token: str) -> invites.InviteView:
    with db.session_scope(readonly=True) as session:
        return invites.view_invite(session, token)


def _accept(token: str, user_id: int) -> invites.Accepted:
    with db.session_scope() as session:
        return invites.accept_invite(session, token=token, user_id=user_id)


def _create(token: str, password: str, name: str) -> str:
    """The new account, its membership and its session, in one transaction."""
    ttl = timedelta(seconds=get_settings().session_ttl_s)
    with db.session_scope() as session:
        user = invites.accept_invite_as_new_user(
            session, token=token, password=password, display_name=name
        )
        assert user.id is not None
        return sessions.start_session(session, user_id=user.id, ttl=ttl)


class InviteState(SessionState):
    token: str = ""
    loaded: bool = False
    invite_email: str = ""
    invite_role: str = ""
    invite_workspace: str = ""
    invite_expires: str = ""
    has_account: bool = False
    # Why the link cannot be used ("" when it can).
    problem: str = ""
    error: str = ""
    notice: str = ""

    @rx.var
    def sign_in_link(self) -> str:
        return f"{SIGN_IN_PATH}?invite={self.token}"

    @rx.event
    async def load(self) -> None:
        self.loaded, self.error, self.notice, self.problem = False, "", "", ""
        self.token = str(self.router.url.query_parameters.get("token") or "")
        await self._signed_in()
        try:
            view = await asyncio.to_thread(_view, self.token)
        except CreditdashError as exc:
            self.problem = exc.message
            self.invite_email = self.invite_role = self.invite_workspace = ""
        else:
            self.invite_email, self.invite_workspace = view.email, view.workspace
            self.invite_role = roles.ROLE_LABELS[view.role]
            self.invite_expires = f"{view.expires_at:%Y-%m-%d %H:%M} UTC"
            self.has_account = view.has_account
            self.problem = view.problem
        self.loaded = True

    @rx.event
    async def accept(self) -> EventSpec | None:
        self.error = self.notice = ""
        who = await self._signed_in()
        if who is None:
            self.error = "Sign in first, as " + (self.invite_email or "the invited address") + "."
            return None
        try:
            accepted = await asyncio.to_thread(_accept, self.token, who.user_id)
        except CreditdashError as exc:
            self.error = exc.message
            return None
        # Open the dashboard on the workspace just joined.
        portal = await self.get_state(PortalState)
        portal.workspace_id = accepted.customer_id
        self.notice = accepted.message
        return rx.redirect("/home")

    @rx.event
    async def create_account(self, form: dict[str, str]) -> EventSpec | None:
        self.error = self.notice = ""
        if form.get("password") != form.get("confirm_password"):
            self.error = "The passwords do not match."
            return None
        try:
            token = await asyncio.to_thread(
                _create,
                self.token,
                str(form.get("password") or ""),
                str(form.get("name") or ""),
            )
        except CreditdashError as exc:
            self.error = exc.message
            return None
        return await cookie_then(token, "/home")
