"""API keys: list, create (the key is shown once), revoke."""

from __future__ import annotations

import asyncio
import json
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import api_keys
from creditdash.core import db
from creditdash.core.errors import CreditdashError
from creditdash.core.numbers import credits_text
from creditdash.state import forms
from creditdash.state.base import PortalState, Workspace, workspace_event


class KeyRow(TypedDict):
    id: str
    name: str
    prefix: str
    created: str
    last_used: str
    limits: str
    revoked: bool


def _limits_text(key: api_keys.ApiKey) -> str:
    parts = []
    if key.rpm_limit:
        parts.append(f"{key.rpm_limit}/min")
    if key.concurrency_limit:
        parts.append(f"{key.concurrency_limit} at once")
    if key.monthly_spend_cap_micros:
        parts.append(f"cap {credits_text(key.monthly_spend_cap_micros)}/month")
    if key.allowed_models_json:
        parts.append("models: " + ", ".join(json.loads(key.allowed_models_json)))
    return "; ".join(parts) or "no limits"


def _rows(customer_id: str) -> list[KeyRow]:
    with db.session_scope(readonly=True) as session:
        return [
            KeyRow(
                id=k.id,
                name=k.name,
                prefix=k.display_prefix + "…",
                created=k.created_at.strftime("%Y-%m-%d %H:%M"),
                last_used=k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "never",
                limits=_limits_text(k),
                revoked=k.revoked_at is not None,
            )
            for k in api_keys.list_keys(session, customer_id=customer_id)
        ]


def _create(customer_id: str, user_id: int, form: dict[str, str]) -> str:
    models = [m.strip() for m in (form.get("models") or "").split(",") if m.strip()]
    limits = api_keys.KeyLimits(
        rpm=forms.optional_whole(form, "rpm"),
        concurrency=forms.optional_whole(form, "concurrency"),
        monthly_spend_cap_micros=forms.optional_credits(form, "monthly_cap", field="Monthly cap"),
        allowed_models=tuple(models) if models else None,
    )
    with db.session_scope() as session:
        _key, raw = api_keys.create_api_key(
            session,
            customer_id=customer_id,
            name=form.get("name", ""),
            created_by_user_id=user_id,
            limits=limits,
        )
    return raw


def _revoke(customer_id: str, key_id: str) -> None:
    with db.session_scope() as session:
        api_keys.revoke_api_key(session, customer_id=customer_id, key_id=key_id)


# The create form's fields, by the words the services start their refusals with.
CREATE_FIELDS: dict[str, str | tuple[str, ...]] = {
    "name": "key name",
    "rpm": ("requests per minute", "rpm"),
    "concurrency": ("concurrent requests", "concurrency"),
    "monthly_cap": "monthly",
    "models": "allowed models",
}
CREATE_FORM_ID = "create-key-form"


class KeysState(PortalState):
    keys: list[KeyRow] = []
    error: str = ""
    # The create form's field the error is about ("" for none: shown above the button).
    error_field: str = ""
    notice: str = ""
    # The revocation waiting for its confirmation ("" when none) and its key (server only).
    confirm_text: str = ""
    _pending_key: str = ""
    # The new key, shown once in a dialog and forgotten when it closes.
    new_key: str = ""
    loaded: bool = False

    @rx.event
    @workspace_event(clearing=("new_key", "error"), permission="keys.read")
    async def load(self, where: Workspace) -> EventSpec | None:
        self.keys = await asyncio.to_thread(_rows, where.customer_id)
        self.loaded = True
        return None

    @rx.event
    @workspace_event(clearing=("error", "error_field", "notice"), permission="keys.manage")
    async def create(self, where: Workspace, form: dict[str, str]) -> EventSpec | None:
        """A refusal is shown beside its field and the form keeps what was typed; a new key
        empties the form."""
        try:
            self.new_key = await asyncio.to_thread(
                _create, where.customer_id, where.user.user_id, form
            )
        except CreditdashError as exc:
            self.error = exc.message
            self.error_field = forms.error_field(exc.message, CREATE_FIELDS)
            return None
        self.keys = await asyncio.to_thread(_rows, where.customer_id)
        return rx.call_script(f"document.getElementById({CREATE_FORM_ID!r})?.reset()")

    @rx.event
    def forget_new_key(self) -> None:
        self.new_key = ""

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="keys.manage")
    async def revoke(self, where: Workspace, key_id: str) -> EventSpec | None:
        """Revoke at once (no confirmation; ask_revoke asks first)."""
        await self._revoke(where, key_id)
        return None

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="keys.manage")
    async def ask_revoke(self, where: Workspace, key_id: str) -> EventSpec | None:
        """Name the key and what revoking it does in a confirmation; writes nothing."""
        row = next((k for k in self.keys if k["id"] == key_id and not k["revoked"]), None)
        if row is None:
            self.error = "That key was not found."
            return None
        self._pending_key = key_id
        self.confirm_text = (
            f"Revoke the key “{row['name']}” ({row['prefix']})? Requests with it are refused "
            "within seconds. This cannot be undone."
        )
        return None

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="keys.manage")
    async def confirm_revoke(self, where: Workspace) -> EventSpec | None:
        key_id, self._pending_key, self.confirm_text = self._pending_key, "", ""
        if key_id:
            await self._revoke(where, key_id)
        return None

    @rx.event
    def cancel_confirm(self) -> None:
        self._pending_key, self.confirm_text = "", ""

    async def _revoke(self, where: Workspace, key_id: str) -> None:
        name = next((k["name"] for k in self.keys if k["id"] == key_id), "")
        try:
            await asyncio.to_thread(_revoke, where.customer_id, key_id)
        except CreditdashError as exc:
            self.error = exc.message
        else:
            self.notice = f"Key “{name}” revoked." if name else "Key revoked."
        self.keys = await asyncio.to_thread(_rows, where.customer_id)
