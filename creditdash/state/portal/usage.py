"""The request log: filters, server-side pages of bounded size, one request's detail."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import api_keys
from creditdash.billing import usage
from creditdash.billing.models import UsageRecord
from creditdash.core import db
from creditdash.core.errors import CreditdashError, ValidationFailed
from creditdash.core.money import format_credits
from creditdash.core.numbers import credits_text
from creditdash.core.timeutil import utcnow
from creditdash.state.base import PortalState, Workspace, workspace_event

PAGE_SIZE = 25
STATUSES = ["ok", "upstream_error", "client_disconnected", "upstream_error_mid_stream"]


class RequestRow(TypedDict):
    id: str
    at: str
    model: str
    # The API the request used (usage.protocol_label).
    protocol: str
    key: str
    status: str
    http_status: int
    tokens: str
    cost: str
    latency_ms: int


class RequestDetail(TypedDict):
    id: str
    at: str
    model: str
    protocol: str
    provider: str
    upstream_model: str
    stream: bool
    status: str
    http_status: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cache_write_tokens: int
    usage_source: str
    cost: str
    latency_ms: int
    ttfb_ms: str
    attempts: int
    attempts_detail: str


class Option(TypedDict):
    value: str
    label: str


def _row(r: UsageRecord) -> RequestRow:
    return RequestRow(
        id=r.id,
        at=r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        model=r.public_model,
        protocol=usage.protocol_label(r),
        key=r.api_key_id,
        status=r.status,
        http_status=r.http_status,
        tokens=f"{r.prompt_tokens} + {r.completion_tokens}",
        cost=credits_text(usage.charged_micros(r)),
        latency_ms=r.latency_ms,
    )


def _day(text: str, label: str) -> date | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(f"{label} must be a date like 2026-11-28") from None


def _page(
    customer_id: str, filters: usage.RequestFilters, page: int
) -> tuple[list[RequestRow], int, list[str], list[Option]]:
    with db.session_scope(readonly=True) as session:
        rows, total = usage.list_requests(
            session, customer_id=customer_id, filters=filters, page=page, page_size=PAGE_SIZE
        )
        models = usage.models_used(session, customer_id=customer_id)
        keys = [
            Option(value=k.id, label=f"{k.name} ({k.display_prefix}…)")
            for k in api_keys.list_keys(session, customer_id=customer_id)
        ]
        return [_row(r) for r in rows], total, models, keys


def _detail(customer_id: str, request_id: str) -> RequestDetail:
    with db.session_scope(readonly=True) as session:
        r = usage.get_request(session, customer_id=customer_id, request_id=request_id)
        tries = json.loads(r.attempts_json or "[]")
        return RequestDetail(
            id=r.id,
            at=r.created_at.isoformat(),
            model=r.public_model,
            protocol=usage.protocol_label(r),
            provider=r.provider,
            upstream_model=r.upstream_model,
            stream=r.stream,
            status=r.status,
            http_status=r.http_status,
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            cached_tokens=r.cached_tokens,
            reasoning_tokens=r.reasoning_tokens,
            cache_write_tokens=r.cache_write_tokens,
            usage_source=r.usage_source,
            cost=format_credits(usage.charged_micros(r)),
            latency_ms=r.latency_ms,
            ttfb_ms="" if r.ttfb_ms is None else str(r.ttfb_ms),
            attempts=r.attempts,
            attempts_detail="; ".join(
                f"{t.get('provider')}/{t.get('upstream_model')}: {t.get('outcome')} "
                f"({t.get('status')}, {t.get('latency_ms')} ms)"
                for t in tries
            ),
        )


class UsageState(PortalState):
    rows: list[RequestRow] = []
    total: int = 0
    page: int = 1
    model: str = ""
    key: str = ""
    status: str = ""
    first_day: str = ""
    last_day: str = ""
    models: list[str] = []
    key_options: list[Option] = []
    detail: RequestDetail | None = None
    error: str = ""
    loaded: bool = False

    @workspace_event(clearing=("error",))
    async def _reload(self, where: Workspace) -> EventSpec | None:
        """The page of requests for the filters the handler has just set."""
        try:
            filters = usage.RequestFilters(
                model=self.model,
                api_key_id=self.key,
                status=self.status,
                first_day=_day(self.first_day, "From"),
                last_day=_day(self.last_day, "To"),
            )
            self.rows, self.total, self.models, self.key_options = await asyncio.to_thread(
                _page, where.customer_id, filters, self.page
            )
        except CreditdashError as exc:
            self.error = exc.message
        self.loaded = True
        return None

    @rx.event
    async def load(self) -> EventSpec | None:
        self.page, self.detail = 1, None
        return await self._reload()

    @rx.event
    async def apply_filters(self, form: dict[str, str]) -> EventSpec | None:
        self.model = "" if form.get("model") in (None, "all") else str(form.get("model"))
        self.key = "" if form.get("key") in (None, "all") else str(form.get("key"))
        self.status = "" if form.get("status") in (None, "all") else str(form.get("status"))
        self.first_day = str(form.get("first_day") or "")
        self.last_day = str(form.get("last_day") or "")
        self.page = 1
        return await self._reload()

    @rx.event
    async def clear_filters(self) -> EventSpec | None:
        self.model = self.key = self.status = self.first_day = self.last_day = ""
        self.page = 1
        return await self._reload()

    @rx.event
    async def next_page(self) -> EventSpec | None:
        if self.page * PAGE_SIZE < self.total:
            self.page += 1
        return await self._reload()

    @rx.event
    async def previous_page(self) -> EventSpec | None:
        self.page = max(1, self.page - 1)
        return await self._reload()

    @rx.event
    @workspace_event
    async def show(self, where: Workspace, request_id: str) -> EventSpec | None:
        try:
            self.detail = await asyncio.to_thread(_detail, where.customer_id, request_id)
        except CreditdashError as exc:
            self.error = exc.message
        return None

    @rx.event
    def hide(self) -> None:
        self.detail = None

    @rx.var
    def page_label(self) -> str:
        if self.total == 0:
            return "No requests"
        first = (self.page - 1) * PAGE_SIZE + 1
        return f"{first}-{min(self.total, self.page * PAGE_SIZE)} of {self.total}"

    @rx.var
    def export_url(self) -> str:
        from urllib.parse import urlencode

        today = utcnow().date()
        params = {
            "customer": self.workspace_id,
            "from": self.first_day or (today - timedelta(days=30)).isoformat(),
            "to": self.last_day or today.isoformat(),
            "kind": "requests",
        }
        return "/billing/statement.csv?" + urlencode(params)
