"""Overview: balance, held and available (refreshed every 2 s), spend, charts per day/model."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TypedDict

import plotly.graph_objects as go
import reflex as rx
from reflex.event import EventSpec

from creditdash.billing import balances, usage
from creditdash.core import db
from creditdash.core.money import format_credits
from creditdash.core.timeutil import utcnow
from creditdash.state.base import PortalState, Workspace, workspace_event

LOW_BALANCE_MICROS = 2_000_000
RANGES = {"7 days": 7, "30 days": 30, "90 days": 90}


class SeriesPoint(TypedDict):
    day: str
    model: str
    spend: str
    tokens: int
    requests: int


@dataclass(frozen=True)
class Snapshot:
    balance: str
    held: str
    available: str
    available_micros: int
    today: str
    month: str
    requests_today: int


def _snapshot(customer_id: str) -> Snapshot:
    with db.session_scope(readonly=True) as session:
        balance = balances.customer_balance(session, customer_id)
        totals = usage.spend_totals(session, customer_id=customer_id)
    return Snapshot(
        balance=format_credits(balance.posted_micros),
        held=format_credits(balance.held_micros),
        available=format_credits(balance.available_micros),
        available_micros=balance.available_micros,
        today=format_credits(totals.today_micros),
        month=format_credits(totals.month_micros),
        requests_today=totals.requests_today,
    )


def _series(customer_id: str, days: int) -> list[SeriesPoint]:
    last = utcnow().date()
    with db.session_scope(readonly=True) as session:
        points = usage.daily_usage(
            session,
            customer_id=customer_id,
            first_day=last - timedelta(days=days - 1),
            last_day=last,
        )
    return [
        SeriesPoint(
            day=p.day.isoformat(),
            model=p.model,
            spend=format_credits(p.spend_micros),
            tokens=p.prompt_tokens + p.completion_tokens,
            requests=p.requests,
        )
        for p in points
    ]


def _figure(points: list[SeriesPoint], value: str, title: str, days: int) -> go.Figure:
    last = utcnow().date()
    first = last - timedelta(days=days - 1)
    figure = go.Figure()
    for model in sorted({p["model"] for p in points}):
        mine = [p for p in points if p["model"] == model]
        # Display only: plotly draws floats; the numbers themselves stay exact strings.
        ys = [float(Decimal(str(p[value]))) for p in mine]  # type: ignore[literal-required]
        # On a date axis a lone bar would be a hairline: give each bar 0.8 of a day (in ms).
        figure.add_bar(x=[p["day"] for p in mine], y=ys, name=model, width=69_120_000)
    figure.update_layout(
        title=title,
        barmode="stack",
        height=320,
        autosize=True,
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.2},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        xaxis={
            "type": "date",
            "tickformat": "%b %d",
            # Whole days, the chosen range even where it has no usage.
            "range": [
                (first - timedelta(hours=12)).isoformat(),
                (last + timedelta(hours=12)).isoformat(),
            ],
        },
        yaxis={"tickformat": ",.6~f" if value == "spend" else ",d", "rangemode": "tozero"},
    )
    return figure


class OverviewState(PortalState):
    balance: str = "…"
    held: str = "…"
    available: str = "…"
    low_balance: bool = False
    today: str = "…"
    month: str = "…"
    requests_today: int = 0
    range_label: str = "30 days"
    series: list[SeriesPoint] = []
    loaded: bool = False
    ticks: int = 0

    async def _refresh(self, where: Workspace, *, charts: bool) -> None:
        snap = await asyncio.to_thread(_snapshot, where.customer_id)
        self.balance, self.held, self.available = snap.balance, snap.held, snap.available
        self.low_balance = snap.available_micros < LOW_BALANCE_MICROS
        self.today, self.month, self.requests_today = snap.today, snap.month, snap.requests_today
        if charts:
            days = RANGES.get(self.range_label, 30)
            self.series = await asyncio.to_thread(_series, where.customer_id, days)
        self.loaded = True

    @rx.event
    @workspace_event
    async def load(self, where: Workspace) -> EventSpec | None:
        await self._refresh(where, charts=True)
        return None

    @rx.event
    @workspace_event
    async def tick(self, where: Workspace, _now: str = "") -> EventSpec | None:
        """Every 2 s while the page is open: balance and totals; charts every 10 s."""
        self.ticks += 1
        await self._refresh(where, charts=self.ticks % 5 == 0)
        return None

    @rx.event
    async def set_range(self, label: str | list[str]) -> EventSpec | None:
        """The chosen range is the browser's own; the charts for it are the workspace's."""
        if isinstance(label, str) and label in RANGES:
            self.range_label = label
        return await self._refresh_charts()

    @workspace_event
    async def _refresh_charts(self, where: Workspace) -> EventSpec | None:
        await self._refresh(where, charts=True)
        return None

    @rx.var
    def spend_figure(self) -> go.Figure:
        return _figure(self.series, "spend", "Spend per day (credits)", self._days)

    @rx.var
    def tokens_figure(self) -> go.Figure:
        return _figure(self.series, "tokens", "Tokens per day", self._days)

    @property
    def _days(self) -> int:
        return RANGES.get(self.range_label, 30)

    @rx.var
    def has_usage(self) -> bool:
        return len(self.series) > 0
