"""Prices and margins: model prices, scheduled price changes, routes and fallback policies,
and what `prices sync` found (catalog/price_sync.py), to accept or reject.

Every handler is an @admin_event: the admin role is checked on the server first (state/base.py).
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

import plotly.graph_objects as go
import reflex as rx
from reflex.event import EventSpec

from creditdash.catalog import price_sync, pricing
from creditdash.catalog.cost_schedules import describe_cost
from creditdash.catalog.prices import Price
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.db import Session
from creditdash.core.errors import ValidationFailed
from creditdash.core.money import format_credits
from creditdash.state import forms
from creditdash.state.base import AdminBase, admin_event, with_session


class ModelRow(TypedDict):
    name: str
    input: str
    output: str
    cached: str
    cache_write: str  # "" when cache writes cost input
    fee: str


class RouteRow(TypedDict):
    model: str
    provider: str
    upstream_model: str
    priority: int
    weight: int
    enabled: bool
    input: str
    output: str
    cached: str
    cache_write: str
    fee: str


def _optional(micros: int | None) -> str:
    return "" if micros is None else format_credits(micros)


class FallbackRow(TypedDict):
    model: str
    fall_through: str
    max_attempts: int
    attempt_timeout_s: str
    cooldown_failures: int
    cooldown_s: int


def _routes() -> tuple[list[RouteRow], list[FallbackRow]]:
    with db.session_scope(readonly=True) as session:
        routes = [
            RouteRow(
                model=r.model,
                provider=r.provider,
                upstream_model=r.upstream_model,
                priority=r.priority,
                weight=r.weight,
                enabled=r.enabled,
                input=format_credits(r.cost.input_micros_per_mtok),
                output=format_credits(r.cost.output_micros_per_mtok),
                cached=format_credits(r.cost.cached_input_micros_per_mtok),
                cache_write=_optional(r.cost.cache_write_micros_per_mtok),
                fee=format_credits(r.cost.request_fee_micros),
            )
            for r in pricing.list_routes(session)
        ]
        policies = [
            FallbackRow(
                model=f.model,
                fall_through=f.fall_through,
                max_attempts=f.max_attempts,
                attempt_timeout_s="" if f.attempt_timeout_s is None else str(f.attempt_timeout_s),
                cooldown_failures=f.cooldown_failures,
                cooldown_s=f.cooldown_s,
            )
            for f in pricing.list_fallbacks(session)
        ]
    return routes, policies


class ScheduleRow(TypedDict):
    id: int
    model: str
    effective_at: str
    price: str
    status: str
    created_by: str


def _schedules() -> list[ScheduleRow]:
    with db.session_scope(readonly=True) as session:
        return [
            ScheduleRow(
                id=v.id,
                model=v.model,
                effective_at=v.effective_at.strftime("%Y-%m-%d %H:%M UTC"),
                price=f"{format_credits(v.price.input_micros_per_mtok)} / "
                f"{format_credits(v.price.output_micros_per_mtok)} / "
                f"{format_credits(v.price.cached_input_micros_per_mtok)} / "
                f"{format_credits(v.price.request_fee_micros)}",
                status=v.status,
                created_by=v.created_by,
            )
            for v in pricing.list_schedules(session)
        ]


class MarginRow(TypedDict):
    model: str
    route: str
    price: str
    cost: str
    margin: str
    negative: bool


def _models() -> tuple[list[ModelRow], list[MarginRow], list[dict[str, object]]]:
    with db.session_scope(readonly=True) as session:
        models = pricing.list_models(session)
        lines = pricing.margins(session)
    model_rows = [
        ModelRow(
            name=m.name,
            input=format_credits(m.input_micros_per_mtok),
            output=format_credits(m.output_micros_per_mtok),
            cached=format_credits(m.cached_input_micros_per_mtok),
            cache_write=_optional(m.cache_write_micros_per_mtok),
            fee=format_credits(m.request_fee_micros),
        )
        for m in models
    ]
    margin_rows = [
        MarginRow(
            model=ln.model,
            route=f"{ln.provider}/{ln.upstream_model}",
            price=format_credits(ln.price_micros),
            cost=format_credits(ln.cost_micros),
            margin="n/a" if ln.margin_bps is None else f"{ln.margin_bps / 100:.2f}%",
            negative=ln.losing,
        )
        for ln in lines
    ]
    # For the chart only (display floats); the table keeps the exact values.
    chart = [
        {
            "label": f"{ln.model} via {ln.provider}",
            "price": ln.price_micros / 1e6,
            "cost": ln.cost_micros / 1e6,
        }
        for ln in lines
    ]
    return model_rows, margin_rows, chart


class FindingRow(TypedDict):
    id: int
    route: str
    kind: str
    matched: str
    change: str
    effective_at: str
    losing: bool
    loss_mix: str
    closed: bool


def _change(before: Price | None, after: Price | None) -> str:
    """The fields that differ, as "input 0.100000 -> 0.150000; ..." (credits per 1M tokens)."""
    if before is None or after is None:
        return "no price in the bundled data"
    old, new = describe_cost(before), describe_cost(after)
    return "; ".join(
        f"{k.removesuffix('_per_mtok')} {old.get(k, '= input')} -> {v}"
        for k, v in new.items()
        if old.get(k) != v
    )


def _findings() -> list[FindingRow]:
    with db.session_scope(readonly=True) as session:
        views = price_sync.list_reviews(session)
    return [
        FindingRow(
            id=v.id,
            route=v.route,
            kind=v.kind,
            matched=v.matched_model or v.data_version,
            change=_change(v.before, v.after),
            effective_at=v.effective_at.strftime("%Y-%m-%d %H:%M UTC") if v.effective_at else "",
            losing=v.losing,
            loss_mix=v.loss_mix,
            closed=v.closed,
        )
        for v in views
    ]


class AdminModelsState(AdminBase):
    models: list[ModelRow] = []
    margin_rows: list[MarginRow] = []
    chart: list[dict[str, object]] = []
    routes: list[RouteRow] = []
    policies: list[FallbackRow] = []
    schedules: list[ScheduleRow] = []
    findings: list[FindingRow] = []

    async def _reload(self) -> None:
        self.models, self.margin_rows, self.chart = await asyncio.to_thread(_models)
        self.routes, self.policies = await asyncio.to_thread(_routes)
        self.schedules = await asyncio.to_thread(_schedules)
        self.findings = await asyncio.to_thread(_findings)

    @rx.event
    @admin_event
    async def run_sync(self, actor: Actor) -> EventSpec | None:
        """`prices sync` with the defaults: effective now, the configured gate."""
        await self._run(
            with_session(lambda s: price_sync.sync_prices(s, actor=actor)),
            "Synced with the bundled price data; findings are listed below.",
        )
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def accept_finding(self, actor: Actor, review_id: int) -> EventSpec | None:
        await self._run(
            with_session(
                lambda s: price_sync.decide_review(
                    s, review_id=int(review_id), accept=True, actor=actor
                )
            ),
            "Finding accepted.",
        )
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def reject_finding(self, actor: Actor, review_id: int) -> EventSpec | None:
        await self._run(
            with_session(
                lambda s: price_sync.decide_review(
                    s, review_id=int(review_id), accept=False, actor=actor
                )
            ),
            "Finding rejected.",
        )
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def schedule(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:
        from datetime import UTC, datetime

        model = str(form.get("model") or "")

        def work(session: Session) -> object:
            try:
                at = datetime.fromisoformat(str(form.get("effective_at") or "")).replace(tzinfo=UTC)
            except ValueError:
                raise ValidationFailed("the effective time is a date and time (UTC)") from None
            price = forms.price(form, "price")
            return pricing.schedule_price(
                session,
                model=model,
                price=price,
                effective_at=at,
                actor=actor,
                acknowledge_loss=forms.checked(form, "acknowledge"),
            )

        await self._run(with_session(work), f"New price of {model} scheduled.")
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def cancel_schedule(self, actor: Actor, schedule_id: int) -> EventSpec | None:
        await self._run(
            with_session(
                lambda s: pricing.cancel_schedule(s, schedule_id=int(schedule_id), actor=actor)
            ),
            "Schedule cancelled.",
        )
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def save_route(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:

        def work(session: Session) -> object:
            cost = forms.price(form, "cost")
            return pricing.set_route(
                session,
                model=str(form.get("model") or ""),
                provider=str(form.get("provider") or ""),
                upstream_model=str(form.get("upstream_model") or ""),
                priority=forms.whole(form, "priority"),
                weight=forms.whole(form, "weight"),
                enabled=forms.checked(form, "enabled"),
                cost=cost,
                actor=actor,
                acknowledge_loss=forms.checked(form, "acknowledge"),
            )

        await self._run(
            with_session(work), f"Route {form.get('provider')}/{form.get('upstream_model')} saved."
        )
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def save_fallback(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:

        def work(session: Session) -> object:
            timeout = str(form.get("attempt_timeout_s") or "").strip()
            pricing.set_fallback(
                session,
                model=str(form.get("model") or ""),
                fall_through=[
                    k.strip() for k in str(form.get("fall_through") or "").split(",") if k.strip()
                ],
                max_attempts=forms.whole(form, "max_attempts", "3"),
                attempt_timeout_s=forms.whole(form, "attempt_timeout_s", "0") if timeout else None,
                cooldown_failures=forms.whole(form, "cooldown_failures", "3"),
                cooldown_s=forms.whole(form, "cooldown_s", "30"),
                actor=actor,
            )
            return None

        await self._run(with_session(work), f"Fallback policy of {form.get('model')} saved.")
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def load(self, actor: Actor) -> EventSpec | None:
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def save_price(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:
        model = str(form.get("model") or "")

        def work(session: Session) -> object:
            price = forms.price(form, "price")
            return pricing.set_model_price(
                session,
                model=model,
                price=price,
                actor=actor,
                acknowledge_loss=forms.checked(form, "acknowledge"),
            )

        await self._run(with_session(work), f"Price of {model} saved; new requests use it.")
        await self._reload()
        return None

    @rx.var
    def model_names(self) -> list[str]:
        return [m["name"] for m in self.models]

    @rx.var
    def margin_figure(self) -> go.Figure:
        figure = go.Figure()
        labels = [str(c["label"]) for c in self.chart]
        figure.add_bar(x=labels, y=[c["price"] for c in self.chart], name="price")
        figure.add_bar(x=labels, y=[c["cost"] for c in self.chart], name="cost")
        figure.update_layout(
            title="Price and cost for 1,000 prompt + 500 completion tokens (credits)",
            barmode="group",
            height=340,
            margin={"l": 50, "r": 10, "t": 40, "b": 80},
            paper_bgcolor="rgba(0,0,0,0)",
            plot_bgcolor="rgba(0,0,0,0)",
            legend={"orientation": "h"},
            yaxis={"tickformat": ",.6~f"},
        )
        return figure
