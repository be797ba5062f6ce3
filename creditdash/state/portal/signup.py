"""Sign-up: a new user with their own workspace, signed in at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import sessions
from creditdash.billing import onboarding
from creditdash.billing.payments import packages
from creditdash.core import db
from creditdash.core.errors import CreditdashError
from creditdash.core.settings import get_settings
from creditdash.routes import checkout_page
from creditdash.state import forms
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


def _package_named(wanted: str) -> str:
    """The name of the package on sale that `wanted` names (any case), "" for none."""
    wanted = wanted.strip().lower()
    if not wanted:
        return ""
    with db.session_scope(readonly=True) as session:
        on_sale = packages.list_packages(session, active_only=True)
    return next((p.name for p in on_sale if p.name.lower() == wanted), "")


# The form's fields, by the words the services start their refusals with.
FIELDS: dict[str, str | tuple[str, ...]] = {
    "email": ("email", "an account with this email", "a user with email", "a customer with email"),
    "password": "password",
    "workspace": "customer name",
    "name": "name",
}


class SignUpState(SessionState):
    error: str = ""
    # The field the error is about ("" for none: shown above the button).
    error_field: str = ""
    # The package chosen on the pricing or landing page (?package=growth), carried on to its
    # checkout once the account is made; "" for none.
    package: str = ""

    @rx.event
    async def load(self) -> EventSpec | None:
        self.error = self.error_field = ""
        wanted = str(self.router.url.query_parameters.get("package") or "")
        self.package = await asyncio.to_thread(_package_named, wanted[:100])
        if await self._signed_in() is not None:
            return rx.redirect(self._next_page())
        return None

    def _next_page(self) -> str:
        return checkout_page(self.package) if self.package else "/home"

    @rx.event
    async def sign_up(self, form: dict[str, str]) -> EventSpec | None:
        """A refusal keeps the form as typed and names its field; success signs in and goes
        on to the chosen package's checkout (or the overview)."""
        self.error = self.error_field = ""
        if form.get("password") != form.get("confirm_password"):
            self.error, self.error_field = "The passwords do not match.", "confirm_password"
            return None
        try:
            token = await asyncio.to_thread(_sign_up, form)
        except CreditdashError as exc:
            self.error = exc.message
            self.error_field = forms.error_field(exc.message, FIELDS)
            return None
        return await cookie_then(token, self._next_page())
