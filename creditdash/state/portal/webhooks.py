"""Webhooks: the workspace's endpoints, adding one (its secret shown once), enabling,
disabling, rotating the secret, deleting, and each endpoint's delivery log with Resend."""

from __future__ import annotations

import asyncio
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.core import db
from creditdash.core.errors import CreditdashError
from creditdash.core.outbox import WEBHOOK_EVENT_TYPES
from creditdash.notify import delivery, endpoints
from creditdash.state.base import PortalState, Workspace, workspace_event

EVENT_FIELD = "event:"  # the add form's checkbox names: "event:key.created", ...


class EndpointRow(TypedDict):
    id: str
    url: str
    description: str
    events: str
    enabled: bool
    disabled_reason: str
    failures: int


class DeliveryRow(TypedDict):
    id: str
    type: str
    status: str
    attempts: int
    last_status: str
    last_attempt: str
    next_attempt: str
    error: str
    payload: str


def _time(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else "—"


def _endpoint_rows(customer_id: str) -> list[EndpointRow]:
    with db.session_scope(readonly=True) as session:
        return [
            EndpointRow(
                id=e.id,
                url=e.url,
                description=e.description,
                events=", ".join(endpoints.event_types(e)),
                enabled=e.enabled,
                disabled_reason=e.disabled_reason,
                failures=e.consecutive_failures,
            )
            for e in endpoints.list_endpoints(session, customer_id=customer_id)
        ]


def _delivery_rows(customer_id: str, endpoint_id: str) -> list[DeliveryRow]:
    if not endpoint_id:
        return []
    with db.session_scope(readonly=True) as session:
        views = delivery.list_deliveries(
            session, customer_id=customer_id, endpoint_id=endpoint_id, limit=100
        )
    return [
        DeliveryRow(
            id=v.id,
            type=v.event_type,
            status=v.status,
            attempts=v.attempts,
            last_status=str(v.last_status_code) if v.last_status_code is not None else "—",
            last_attempt=_time(v.last_attempt_at),
            next_attempt=_time(v.next_attempt_at) if v.status == "pending" else "—",
            error=v.last_error,
            payload=v.payload,
        )
        for v in views
    ]


def _add(customer_id: str, user_id: int, form: dict[str, str]) -> str:
    chosen = [t for t in WEBHOOK_EVENT_TYPES if form.get(EVENT_FIELD + t)]
    with db.session_scope() as session:
        _endpoint, secret = endpoints.add_endpoint(
            session,
            customer_id=customer_id,
            url=form.get("url", ""),
            event_types=chosen,
            description=form.get("description", ""),
            user_id=user_id,
        )
    return secret


def _set_enabled(customer_id: str, user_id: int, endpoint_id: str, enabled: bool) -> None:
    with db.session_scope() as session:
        endpoints.update_endpoint(
            session,
            endpoint_id=endpoint_id,
            customer_id=customer_id,
            enabled=enabled,
            user_id=user_id,
        )


def _rotate(customer_id: str, user_id: int, endpoint_id: str) -> str:
    with db.session_scope() as session:
        return endpoints.rotate_secret(
            session, endpoint_id=endpoint_id, customer_id=customer_id, user_id=user_id
        )


def _delete(customer_id: str, user_id: int, endpoint_id: str) -> None:
    with db.session_scope() as session:
        endpoints.delete_endpoint(
            session, endpoint_id=endpoint_id, customer_id=customer_id, user_id=user_id
        )


def _resend(customer_id: str, user_id: int, delivery_id: str) -> None:
    with db.session_scope() as session:
        delivery.resend(session, delivery_id=delivery_id, customer_id=customer_id, user_id=user_id)


def _send_test(customer_id: str, user_id: int, endpoint_id: str) -> None:
    with db.session_scope() as session:
        delivery.send_test_event(
            session, endpoint_id=endpoint_id, customer_id=customer_id, user_id=user_id
        )


class WebhooksState(PortalState):
    endpoints: list[EndpointRow] = []
    deliveries: list[DeliveryRow] = []
    # The endpoint whose delivery log is shown.
    selected: str = ""
    error: str = ""
    notice: str = ""
    # A new or rotated secret, shown once in a dialog and forgotten when it closes.
    new_secret: str = ""
    loaded: bool = False

    async def _refresh(self, customer_id: str) -> None:
        self.endpoints = await asyncio.to_thread(_endpoint_rows, customer_id)
        if self.selected not in {e["id"] for e in self.endpoints}:
            self.selected = ""
        self.deliveries = await asyncio.to_thread(_delivery_rows, customer_id, self.selected)

    @rx.event
    @workspace_event(clearing=("new_secret", "error", "notice"), permission="webhooks.read")
    async def load(self, where: Workspace) -> EventSpec | None:
        await self._refresh(where.customer_id)
        self.loaded = True
        return None

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="webhooks.read")
    async def show_log(self, where: Workspace, endpoint_id: str) -> EventSpec | None:
        self.selected = endpoint_id
        await self._refresh(where.customer_id)
        return None

    @rx.event
    @workspace_event(clearing=("error", "notice", "new_secret"), permission="webhooks.manage")
    async def add(self, where: Workspace, form: dict[str, str]) -> EventSpec | None:
        try:
            self.new_secret = await asyncio.to_thread(
                _add, where.customer_id, where.user.user_id, form
            )
        except CreditdashError as exc:
            self.error = exc.message
        await self._refresh(where.customer_id)
        return None

    @rx.event
    def forget_secret(self) -> None:
        self.new_secret = ""

    async def _change(self, where: Workspace, work: object, *args: str, done: str) -> None:
        assert callable(work)
        try:
            await asyncio.to_thread(work, where.customer_id, where.user.user_id, *args)
            self.notice = done
        except CreditdashError as exc:
            self.error = exc.message
        await self._refresh(where.customer_id)

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="webhooks.manage")
    async def enable(self, where: Workspace, endpoint_id: str) -> EventSpec | None:
        try:
            await asyncio.to_thread(
                _set_enabled, where.customer_id, where.user.user_id, endpoint_id, True
            )
        except CreditdashError as exc:
            self.error = exc.message
        await self._refresh(where.customer_id)
        return None

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="webhooks.manage")
    async def disable(self, where: Workspace, endpoint_id: str) -> EventSpec | None:
        try:
            await asyncio.to_thread(
                _set_enabled, where.customer_id, where.user.user_id, endpoint_id, False
            )
        except CreditdashError as exc:
            self.error = exc.message
        await self._refresh(where.customer_id)
        return None

    @rx.event
    @workspace_event(clearing=("error", "notice", "new_secret"), permission="webhooks.manage")
    async def rotate(self, where: Workspace, endpoint_id: str) -> EventSpec | None:
        try:
            self.new_secret = await asyncio.to_thread(
                _rotate, where.customer_id, where.user.user_id, endpoint_id
            )
        except CreditdashError as exc:
            self.error = exc.message
        return None

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="webhooks.manage")
    async def delete(self, where: Workspace, endpoint_id: str) -> EventSpec | None:
        await self._change(where, _delete, endpoint_id, done="Endpoint deleted.")
        return None

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="webhooks.manage")
    async def resend(self, where: Workspace, delivery_id: str) -> EventSpec | None:
        await self._change(where, _resend, delivery_id, done="Resend queued.")
        return None

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="webhooks.manage")
    async def send_test(self, where: Workspace, endpoint_id: str) -> EventSpec | None:
        await self._change(where, _send_test, endpoint_id, done="Test event queued.")
        return None
