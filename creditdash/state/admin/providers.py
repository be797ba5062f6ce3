"""Upstream providers: their endpoints and keys, and a connection check.

Every handler is an @admin_event: the admin role is checked on the server first (state/base.py).
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.catalog import providers
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.db import Session
from creditdash.core.errors import CreditdashError
from creditdash.state import forms
from creditdash.state.base import AdminBase, admin_event, with_session


class ProviderRow(TypedDict):
    name: str
    kind: str
    base_url: str
    key_hint: str
    headers_hint: str
    timeout_s: int
    enabled: bool


def _providers() -> list[ProviderRow]:
    with db.session_scope(readonly=True) as session:
        return [
            ProviderRow(
                name=p.name,
                kind=p.kind,
                base_url=p.base_url,
                key_hint=p.key_hint,
                headers_hint=p.headers_hint,
                timeout_s=p.timeout_s,
                enabled=p.enabled,
            )
            for p in providers.list_providers(session)
        ]


def _check(name: str) -> str:
    with db.session_scope(readonly=True) as session:
        result = providers.check_connection(session, name=name)
    verdict = "OK" if result.ok else "Failed"
    return f"{name}: {verdict}: {result.message} ({result.latency_ms} ms)"


class AdminProvidersState(AdminBase):
    providers: list[ProviderRow] = []

    @rx.event
    @admin_event
    async def load(self, actor: Actor) -> EventSpec | None:
        self.providers = await asyncio.to_thread(_providers)
        return None

    @rx.event
    @admin_event
    async def save(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:

        def work(session: Session) -> object:
            return providers.save_provider(
                session,
                name=str(form.get("name") or ""),
                base_url=str(form.get("base_url") or ""),
                api_key=str(form.get("api_key") or ""),
                timeout_s=forms.whole(form, "timeout_s", "300"),
                enabled=forms.checked(form, "enabled"),
                actor=actor,
                kind=forms.text(form, "kind", "openai"),
            )

        await self._run(with_session(work), f"Provider {form.get('name')} saved.")
        self.providers = await asyncio.to_thread(_providers)
        return None

    @rx.event
    @admin_event
    async def check(self, actor: Actor, name: str) -> EventSpec | None:
        self.admin_error = self.admin_notice = ""
        try:
            self.admin_notice = await asyncio.to_thread(_check, name)
        except CreditdashError as exc:
            self.admin_error = exc.message
        return None
