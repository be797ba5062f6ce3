"""Every customer's requests: filters, pages of 50, revenue, cost and margin per day.

Every handler is an @admin_event: the admin role is checked on the server first (state/base.py).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TypedDict
from urllib.parse import urlencode

import plotly.graph_objects as go
import reflex as rx
from reflex.event import EventSpec

from creditdash.billing import usage
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.numbers import credits_text
from creditdash.core.timeutil import utcnow
from creditdash.state.base import AdminBase, admin_event


class AdminRequestRow(TypedDict):
    id: str
    at: str
    customer_id: str
    model: str
    # The client's API, and the upstream's when translated (usage.protocol_label).
    protocol: str
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
            protocol=usage.protocol_label(r),
            provider=r.provider,
            status=r.status,
            tokens=f"{r.prompt_tokens} + {r.completion_tokens}",
            cost=credits_text(usage.charged_micros(r)),
            unbilled=credits_text(r.unbilled_micros),
            disputed=r.disputed_completion_tokens,
            upstream_cost=credits_text(r.upstream_cost_micros),
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
    @admin_event
    async def load(self, actor: Actor) -> EventSpec | None:
        self.page = 1
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def apply(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:
        self.customer = str(form.get("customer") or "").strip()[:40]
        self.model = str(form.get("model") or "").strip()[:120]
        self.status = str(form.get("status") or "").strip()[:32]
        self.page = 1
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def turn(self, actor: Actor, step: int) -> EventSpec | None:
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

        today = utcnow().date()
        query = {"from": (today - timedelta(days=30)).isoformat(), "to": today.isoformat()}
        if self.customer:
            query["customer"] = self.customer
        return "/admin/requests.csv?" + urlencode(query)
