"""Upstream costs: what each provider says it charged per day and model against what the
gateway recorded, with the differences over the tolerance (upstream/reconcile.py).

Every handler is an @admin_event: the admin role is checked on the server first (state/base.py).
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import TypedDict

import plotly.graph_objects as go
import reflex as rx
from reflex.event import EventSpec

from creditdash.catalog.providers import list_providers
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.errors import CreditdashError, ValidationFailed
from creditdash.core.money import format_credits, parse_credits
from creditdash.core.timeutil import utcnow
from creditdash.state.base import AdminBase, admin_event
from creditdash.upstream import reconcile, sources


class DifferenceRow(TypedDict):
    day: str
    model: str
    reported: str
    recorded: str
    difference: str
    requests: int


class ChartPoint(TypedDict):
    day: str
    # Display floats for the chart only; the table keeps the exact values.
    reported: float
    recorded: float


def _day(text: str, label: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationFailed(f"{label} is a date (YYYY-MM-DD)") from None


def _report(
    provider: str, first: str, last: str, tolerance: str, fetch: bool, actor: Actor
) -> tuple[str, list[DifferenceRow], list[ChartPoint]]:
    first_day, last_day = _day(first, "from"), _day(last, "to")
    micros = parse_credits(tolerance, field="tolerance") if tolerance.strip() else None
    with db.session_scope() as session:
        if fetch:
            reconcile.fetch_and_store(
                session, provider=provider, first_day=first_day, last_day=last_day, actor=actor
            )
        report = reconcile.reconcile(
            session,
            provider=provider,
            first_day=first_day,
            last_day=last_day,
            tolerance_micros=micros,
        )
    rows = [
        DifferenceRow(
            day=ln.day.isoformat(),
            model=ln.model,
            reported="none" if ln.reported_micros is None else format_credits(ln.reported_micros),
            recorded=format_credits(ln.recorded_micros),
            difference=format_credits(ln.difference_micros),
            requests=ln.requests,
        )
        for ln in report.differences
    ]
    by_day: dict[str, list[int]] = {}
    for ln in report.lines:
        totals = by_day.setdefault(ln.day.isoformat(), [0, 0])
        totals[0] += ln.reported_micros or 0
        totals[1] += ln.recorded_micros
    chart = [
        ChartPoint(day=day, reported=reported / 1e6, recorded=recorded / 1e6)
        for day, (reported, recorded) in sorted(by_day.items())
    ]
    summary = (
        f"{report.provider}, {first_day} to {last_day}: reported "
        f"{format_credits(report.reported_total_micros)}, recorded "
        f"{format_credits(report.recorded_total_micros)}; {len(rows)} differences over "
        f"{format_credits(report.tolerance_micros)}"
    )
    return summary, rows, chart


def _providers() -> list[str]:
    with db.session_scope(readonly=True) as session:
        names = [v.name for v in list_providers(session) if v.kind in ("openai", "anthropic")]
        configured = {s.provider for s in sources.list_sources(session)}
    return [n + ("" if n in configured else " (CSV only)") for n in names]


class AdminUpstreamState(AdminBase):
    providers: list[str] = []
    summary: str = ""
    differences: list[DifferenceRow] = []
    chart: list[ChartPoint] = []
    first_day: str = ""
    last_day: str = ""

    @rx.event
    @admin_event
    async def load(self, actor: Actor) -> EventSpec | None:
        self.providers = await asyncio.to_thread(_providers)
        today = utcnow().date()
        self.last_day = self.last_day or (today - timedelta(days=1)).isoformat()
        self.first_day = self.first_day or (today - timedelta(days=7)).isoformat()
        return None

    @rx.event
    @admin_event
    async def compare(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:
        """Compare the stored reports; with "fetch" ticked, read the provider's report first."""
        self.admin_error = self.admin_notice = ""
        provider = str(form.get("provider") or "").removesuffix(" (CSV only)")
        self.first_day = str(form.get("first_day") or "")
        self.last_day = str(form.get("last_day") or "")
        try:
            self.summary, self.differences, self.chart = await asyncio.to_thread(
                _report,
                provider,
                self.first_day,
                self.last_day,
                str(form.get("tolerance") or ""),
                str(form.get("fetch") or "") == "on",
                actor,
            )
        except CreditdashError as exc:
            self.admin_error = exc.message
        return None

    @rx.var
    def figure(self) -> go.Figure:
        figure = go.Figure()
        days = [p["day"] for p in self.chart]
        figure.add_bar(x=days, y=[p["reported"] for p in self.chart], name="reported by provider")
        figure.add_bar(x=days, y=[p["recorded"] for p in self.chart], name="recorded by gateway")
        figure.update_layout(
            title="Upstream cost per day (credits)",
            barmode="group",
            height=320,
            margin={"l": 50, "r": 10, "t": 40, "b": 60},
            paper_bgcolor="rgba(0,0,0,0)",
            plot_bgcolor="rgba(0,0,0,0)",
            legend={"orientation": "h"},
            yaxis={"tickformat": ",.6~f"},
        )
        return figure
