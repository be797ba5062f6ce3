"""Admin work queues: payment orders (approve, reject, refund), prices and margins, audit log.
Every handler checks the admin role on the server first (AdminBase._admin)."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import TypedDict

import plotly.graph_objects as go
import reflex as rx
from reflex.event import EventSpec
from sqlmodel import Session, col

from creditdash.billing.payments import manual, orders, refunds
from creditdash.catalog import pricing, providers
from creditdash.core import audit, db
from creditdash.core.audit import Actor
from creditdash.core.errors import CreditdashError, ValidationFailed
from creditdash.core.money import format_credits, format_minor
from creditdash.state import forms
from creditdash.state.admin import AdminBase, _apply

ORDER_FILTERS = [
    "awaiting_payment",
    "paid",
    "partially_refunded",
    "refunded",
    "cancelled",
    "expired",
    "all",
]


class AdminOrderRow(TypedDict):
    id: str
    customer_id: str
    created: str
    package: str
    gross: str
    currency: str
    status: str
    method: str
    reference: str
    maker: str
    refundable: bool


def _orders(status: str) -> list[AdminOrderRow]:
    with db.session_scope(readonly=True) as session:
        found = orders.list_orders(session, status=None if status == "all" else status, limit=200)
        return [
            AdminOrderRow(
                id=o.id,
                customer_id=o.customer_id,
                created=o.created_at.strftime("%Y-%m-%d %H:%M"),
                package=f"{o.package_name} x{o.quantity}",
                gross=format_minor(o.gross_minor, o.currency),
                currency=o.currency,
                status=o.status,
                method=o.method,
                reference=o.transfer_reference or o.payment_reference or "",
                maker=o.created_by_label,
                refundable=o.status in orders.REFUNDABLE,
            )
            for o in found
        ]


class AdminOrdersState(AdminBase):
    rows: list[AdminOrderRow] = []
    status_filter: str = "awaiting_payment"
    # A fresh refund id per opened refund form: a double submit refunds once.
    refund_key: str = ""

    async def _reload(self) -> None:
        self.rows = await asyncio.to_thread(_orders, self.status_filter)

    @rx.event
    async def load(self) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        self.refund_key = "ui-" + secrets.token_hex(8)
        await self._reload()
        return None

    @rx.event
    async def set_filter(self, value: str) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        if value in ORDER_FILTERS:
            self.status_filter = value
        await self._reload()
        return None

    @rx.event
    async def approve(self, form: dict[str, str]) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        order_id, reference = str(form.get("order_id") or ""), str(form.get("reference") or "")
        await self._run(
            _apply(
                lambda s: manual.approve(
                    s, order_id=order_id, actor=actor, payment_reference=reference
                )
            ),
            f"Order {order_id} approved and credited.",
        )
        await self._reload()
        return None

    @rx.event
    async def reject(self, form: dict[str, str]) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        order_id, reason = str(form.get("order_id") or ""), str(form.get("reason") or "")
        await self._run(
            _apply(lambda s: manual.reject(s, order_id=order_id, actor=actor, reason=reason)),
            f"Order {order_id} rejected.",
        )
        await self._reload()
        return None

    @rx.event
    async def refund(self, form: dict[str, str]) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        order_id = str(form.get("order_id") or "")
        currency = next((r["currency"] for r in self.rows if r["id"] == order_id), "EUR")
        refund_id = f"{self.refund_key}-{order_id}"

        def work() -> object:
            amount = forms.money(form, "amount", currency, field="amount")
            return refunds.refund_order(
                order_id,
                amount_minor=amount,
                refund_id=refund_id,
                actor=actor,
                reason=str(form.get("reason") or ""),
            )

        await self._run(work, f"Refund {refund_id} done.")
        self.refund_key = "ui-" + secrets.token_hex(8)
        await self._reload()
        return None


class ModelRow(TypedDict):
    name: str
    input: str
    output: str
    cached: str
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
    fee: str


class FallbackRow(TypedDict):
    model: str
    fall_through: str
    max_attempts: int
    attempt_timeout_s: str
    cooldown_failures: int
    cooldown_s: int


def _routes() -> tuple[list[RouteRow], list[FallbackRow]]:
    from sqlmodel import select as sql_select

    from creditdash.catalog.models import PublicModel

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
                fee=format_credits(r.cost.request_fee_micros),
            )
            for r in pricing.list_routes(session)
        ]
        policies = [
            FallbackRow(
                model=m.name,
                fall_through=m.fallback_on,
                max_attempts=m.max_attempts,
                attempt_timeout_s="" if m.attempt_timeout_s is None else str(m.attempt_timeout_s),
                cooldown_failures=m.cooldown_failures,
                cooldown_s=m.cooldown_s,
            )
            for m in session.exec(sql_select(PublicModel).order_by(col(PublicModel.name)))
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
            negative=ln.margin_bps is not None and ln.margin_bps < 0,
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


class AdminModelsState(AdminBase):
    models: list[ModelRow] = []
    margin_rows: list[MarginRow] = []
    chart: list[dict[str, object]] = []
    routes: list[RouteRow] = []
    policies: list[FallbackRow] = []
    schedules: list[ScheduleRow] = []

    async def _reload(self) -> None:
        self.models, self.margin_rows, self.chart = await asyncio.to_thread(_models)
        self.routes, self.policies = await asyncio.to_thread(_routes)
        self.schedules = await asyncio.to_thread(_schedules)

    @rx.event
    async def schedule(self, form: dict[str, str]) -> EventSpec | None:
        from datetime import UTC, datetime

        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
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

        await self._run(_apply(work), f"New price of {model} scheduled.")
        await self._reload()
        return None

    @rx.event
    async def cancel_schedule(self, schedule_id: int) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        await self._run(
            _apply(lambda s: pricing.cancel_schedule(s, schedule_id=int(schedule_id), actor=actor)),
            "Schedule cancelled.",
        )
        await self._reload()
        return None

    @rx.event
    async def save_route(self, form: dict[str, str]) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor

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
            _apply(work), f"Route {form.get('provider')}/{form.get('upstream_model')} saved."
        )
        await self._reload()
        return None

    @rx.event
    async def save_fallback(self, form: dict[str, str]) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor

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

        await self._run(_apply(work), f"Fallback policy of {form.get('model')} saved.")
        await self._reload()
        return None

    @rx.event
    async def load(self) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        await self._reload()
        return None

    @rx.event
    async def save_price(self, form: dict[str, str]) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
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

        await self._run(_apply(work), f"Price of {model} saved; new requests use it.")
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


class AuditRow(TypedDict):
    at: str
    actor: str
    action: str
    target: str
    before: str
    after: str
    reason: str


def _audit(search: str) -> list[AuditRow]:
    with db.session_scope(readonly=True) as session:
        found = audit.list_entries(session, filters=audit.AuditFilters(search=search))
        return [
            AuditRow(
                at=e.at.strftime("%Y-%m-%d %H:%M:%S"),
                actor=e.actor_label,
                action=e.action,
                target=f"{e.target_type} {e.target_id}",
                before=_compact(e.before_json),
                after=_compact(e.after_json),
                reason=e.reason,
            )
            for e in found
        ]


def _compact(value: str | None) -> str:
    if not value:
        return ""
    data = json.loads(value)
    return ", ".join(f"{k}={v}" for k, v in data.items()) if isinstance(data, dict) else value


class AdminAuditState(AdminBase):
    entries: list[AuditRow] = []
    search: str = ""

    @rx.event
    async def load(self) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        self.entries = await asyncio.to_thread(_audit, self.search)
        return None

    @rx.event
    async def set_search(self, value: str) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        self.search = value[:100]
        self.entries = await asyncio.to_thread(_audit, self.search)
        return None


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
    async def load(self) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        self.providers = await asyncio.to_thread(_providers)
        return None

    @rx.event
    async def save(self, form: dict[str, str]) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor

        def work(session: Session) -> object:
            return providers.save_provider(
                session,
                name=str(form.get("name") or ""),
                base_url=str(form.get("base_url") or ""),
                api_key=str(form.get("api_key") or ""),
                timeout_s=forms.whole(form, "timeout_s", "300"),
                enabled=forms.checked(form, "enabled"),
                actor=actor,
            )

        await self._run(_apply(work), f"Provider {form.get('name')} saved.")
        self.providers = await asyncio.to_thread(_providers)
        return None

    @rx.event
    async def check(self, name: str) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        self.admin_error = self.admin_notice = ""
        try:
            self.admin_notice = await asyncio.to_thread(_check, name)
        except CreditdashError as exc:
            self.admin_error = exc.message
        return None


class AdminRequestRow(TypedDict):
    id: str
    at: str
    customer_id: str
    model: str
    provider: str
    status: str
    tokens: str
    cost: str
    unbilled: str
    # Output tokens the upstream reported beyond the cap it was sent: not charged.
    disputed: int
    upstream_cost: str
    latency_ms: int


def _requests(
    customer: str, model: str, status: str, page: int
) -> tuple[list[AdminRequestRow], int, list[dict[str, object]]]:
    from datetime import timedelta

    from creditdash.billing import usage
    from creditdash.core.timeutil import utcnow

    with db.session_scope(readonly=True) as session:
        rows, total = usage.list_requests(
            session,
            customer_id=customer or None,
            filters=usage.RequestFilters(model=model, status=status),
            page=page,
            page_size=50,
        )
        today = utcnow().date()
        days = usage.daily_margin(session, first_day=today - timedelta(days=29), last_day=today)
    table = [
        AdminRequestRow(
            id=r.id,
            at=r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            customer_id=r.customer_id,
            model=r.public_model,
            provider=r.provider,
            status=r.status,
            tokens=f"{r.prompt_tokens} + {r.completion_tokens}",
            cost=format_credits(usage.charged_micros(r)),
            unbilled=format_credits(r.unbilled_micros),
            disputed=r.disputed_completion_tokens,
            upstream_cost=format_credits(r.upstream_cost_micros),
            latency_ms=r.latency_ms,
        )
        for r in rows
    ]
    # Chart points only (display floats); the table shows exact values.
    series = [
        {
            "day": d.day.isoformat(),
            "revenue": d.revenue_micros / 1e6,
            "cost": d.cost_micros / 1e6,
            "margin": d.margin_micros / 1e6,
            "unbilled": d.unbilled_micros / 1e6,
        }
        for d in days
    ]
    return table, total, series


class AdminRequestsState(AdminBase):
    rows: list[AdminRequestRow] = []
    total: int = 0
    page: int = 1
    customer: str = ""
    model: str = ""
    status: str = ""
    series: list[dict[str, object]] = []

    async def _reload(self) -> None:
        self.rows, self.total, self.series = await asyncio.to_thread(
            _requests, self.customer, self.model, self.status, self.page
        )

    @rx.event
    async def load(self) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        self.page = 1
        await self._reload()
        return None

    @rx.event
    async def apply(self, form: dict[str, str]) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        self.customer = str(form.get("customer") or "").strip()[:40]
        self.model = str(form.get("model") or "").strip()[:120]
        self.status = str(form.get("status") or "").strip()[:32]
        self.page = 1
        await self._reload()
        return None

    @rx.event
    async def turn(self, step: int) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        self.page = max(1, min(self.page + int(step), max(1, (self.total + 49) // 50)))
        await self._reload()
        return None

    @rx.var
    def revenue_figure(self) -> go.Figure:
        figure = go.Figure()
        days = [str(p["day"]) for p in self.series]
        for name in ("revenue", "cost", "margin", "unbilled"):
            figure.add_scatter(
                x=days, y=[p[name] for p in self.series], name=name, mode="lines+markers"
            )
        figure.update_layout(
            title="Charged, upstream cost, margin and unbilled per day (credits, 30 days)",
            height=320,
            margin={"l": 50, "r": 10, "t": 40, "b": 40},
            paper_bgcolor="rgba(0,0,0,0)",
            plot_bgcolor="rgba(0,0,0,0)",
            legend={"orientation": "h"},
            yaxis={"tickformat": ",.6~f"},
        )
        return figure

    @rx.var
    def export_url(self) -> str:
        from datetime import timedelta
        from urllib.parse import urlencode

        from creditdash.core.timeutil import utcnow

        today = utcnow().date()
        query = {"from": (today - timedelta(days=30)).isoformat(), "to": today.isoformat()}
        if self.customer:
            query["customer"] = self.customer
        return "/admin/requests.csv?" + urlencode(query)


class PackageRow(TypedDict):
    name: str
    kind: str
    currency: str
    unit_price: str
    credits: str
    bonus: str
    min_quantity: int
    max_quantity: int
    active: bool
    description: str


class AdminInvoiceRow(TypedDict):
    number: str
    kind: str
    issued: str
    customer_id: str
    order_id: str
    gross: str
    tax_scheme: str
    url: str


def _catalog_of_sales() -> tuple[list[PackageRow], list[AdminInvoiceRow]]:
    from creditdash.billing.invoicing import invoices
    from creditdash.billing.payments import packages

    with db.session_scope(readonly=True) as session:
        package_rows = [
            PackageRow(
                name=p.name,
                kind=p.kind,
                currency=p.currency,
                unit_price=format_minor(p.unit_price_minor, p.currency),
                credits=format_credits(p.credits_micros),
                bonus=format_credits(p.bonus_micros),
                min_quantity=p.min_quantity,
                max_quantity=p.max_quantity,
                active=p.active,
                description=p.description,
            )
            for p in packages.list_packages(session)
        ]
        invoice_rows = [
            AdminInvoiceRow(
                number=i.number,
                kind=i.kind.replace("_", " "),
                issued=i.issued_at.strftime("%Y-%m-%d"),
                customer_id=i.customer_id,
                order_id=i.order_id,
                gross=f"{format_minor(i.gross_minor, i.currency)} {i.currency}",
                tax_scheme=i.tax_scheme.replace("_", " "),
                url=f"/billing/invoices/{i.number}.pdf",
            )
            for i in invoices.list_invoices(session, limit=200)
        ]
    return package_rows, invoice_rows


class AdminSalesState(AdminBase):
    packages: list[PackageRow] = []
    invoices: list[AdminInvoiceRow] = []

    async def _reload(self) -> None:
        self.packages, self.invoices = await asyncio.to_thread(_catalog_of_sales)

    @rx.event
    async def load(self) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        await self._reload()
        return None

    @rx.event
    async def save_package(self, form: dict[str, str]) -> EventSpec | None:
        from creditdash.billing.payments.packages import PackageSpec, save_package

        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        currency = str(form.get("currency") or "EUR")

        def work(session: Session) -> object:
            spec = PackageSpec(
                name=str(form.get("name") or ""),
                kind="custom" if forms.checked(form, "custom") else "standard",
                currency=currency,
                unit_price_minor=forms.money(form, "unit_price", currency, field="price"),
                credits_micros=forms.credits(form, "credits", field="credits"),
                bonus_micros=forms.credits(form, "bonus", field="bonus", default="0"),
                min_quantity=forms.whole(form, "min_quantity", "1"),
                max_quantity=forms.whole(form, "max_quantity", "1"),
                description=str(form.get("description") or ""),
                active=forms.checked(form, "active"),
            )
            return save_package(session, spec=spec, actor=actor)

        await self._run(_apply(work), f"Package {form.get('name')} saved.")
        await self._reload()
        return None
