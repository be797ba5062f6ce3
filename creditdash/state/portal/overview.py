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

from creditdash.accounts import roles
from creditdash.billing import balances, budgets, usage
from creditdash.billing.payments import packages
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.errors import CreditdashError, NotFound
from creditdash.core.money import format_credits
from creditdash.core.numbers import credits_text, money_hint
from creditdash.core.timeutil import utcnow
from creditdash.state import forms
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
    # "≈ €12.50": the available credits at the current package rate ("" with none on sale).
    available_money: str
    today: str
    month: str
    requests_today: int


def _snapshot(customer_id: str) -> Snapshot:
    with db.session_scope(readonly=True) as session:
        balance = balances.customer_balance(session, customer_id)
        totals = usage.spend_totals(session, customer_id=customer_id)
        rate = packages.credit_rate(session)
    return Snapshot(
        balance=credits_text(balance.posted_micros),
        held=credits_text(balance.held_micros),
        available=credits_text(balance.available_micros),
        available_micros=balance.available_micros,
        available_money=money_hint(balance.available_micros, rate),
        today=credits_text(totals.today_micros),
        month=credits_text(totals.month_micros),
        requests_today=totals.requests_today,
    )


class BudgetCard(TypedDict):
    set: bool
    budget: str
    spent: str
    held: str
    percent: int
    # The bar stops at 100 even when a soft budget is passed.
    bar: int
    kind: str
    resets: str
    thresholds: str
    low_balance: str
    # The form's starting values: the budget as it is, so saving changes only what was edited.
    form_monthly: str
    form_thresholds: str
    form_low_balance: str
    form_hard: bool
    # Changes when the saved budget does, so the page starts the form again from it.
    form_key: str


NO_BUDGET = BudgetCard(
    set=False, budget="", spent="", held="", percent=0, bar=0, kind="", resets="",
    thresholds="", low_balance="", form_monthly="", form_thresholds="50,80,100",
    form_low_balance="", form_hard=False, form_key="none",
)  # fmt: skip


def _budget_card(customer_id: str) -> BudgetCard:
    with db.session_scope(readonly=True) as session:
        try:
            status = budgets.get_budget_status(session, customer_id)
        except NotFound:
            return NO_BUDGET
    limit, low = status.monthly_budget_micros, status.low_balance_micros
    percent = status.percent or 0
    return BudgetCard(
        set=True,
        budget=credits_text(limit) if limit is not None else "none",
        spent=credits_text(status.spent_micros),
        held=credits_text(status.held_micros),
        percent=percent,
        bar=min(percent, 100),
        kind="hard" if status.hard else "soft",
        resets=f"{status.resets_at:%Y-%m-%d} 00:00 UTC",
        thresholds=", ".join(f"{t}%" for t in status.thresholds),
        low_balance=credits_text(low) if low is not None else "off",
        form_monthly=format_credits(limit) if limit is not None else "",
        form_thresholds=",".join(str(t) for t in status.thresholds),
        form_low_balance=format_credits(low) if low is not None else "",
        form_hard=status.hard,
        form_key=f"{limit}:{status.hard}:{status.thresholds}:{low}",
    )


def _save_budget(where: Workspace, form: dict[str, str]) -> None:
    monthly = forms.optional_credits(form, "monthly", field="Monthly budget")
    low = forms.optional_credits(form, "low_balance", field="Low-balance alert")
    thresholds = budgets.parse_thresholds(forms.text(form, "thresholds", "50,80,100"))
    user = where.user
    with db.session_scope() as session:
        if monthly is None and low is None:
            budgets.clear_budget(
                session,
                customer_id=where.customer_id,
                actor=Actor.user(user.user_id, user.email),
                user_id=user.user_id,
            )
            return
        budgets.set_budget(
            session,
            customer_id=where.customer_id,
            monthly_micros=monthly,
            hard=forms.checked(form, "hard"),
            thresholds=thresholds,
            low_balance_micros=low,
            actor=Actor.user(user.user_id, user.email),
            user_id=user.user_id,
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
    available_money: str = ""
    low_balance: bool = False
    today: str = "…"
    month: str = "…"
    requests_today: int = 0
    range_label: str = "30 days"
    series: list[SeriesPoint] = []
    loaded: bool = False
    ticks: int = 0
    budget: BudgetCard = NO_BUDGET
    budget_error: str = ""
    budget_saved: str = ""

    async def _refresh(self, where: Workspace, *, charts: bool) -> None:
        snap = await asyncio.to_thread(_snapshot, where.customer_id)
        self.balance, self.held, self.available = snap.balance, snap.held, snap.available
        self.available_money = snap.available_money
        self.low_balance = snap.available_micros < LOW_BALANCE_MICROS
        self.today, self.month, self.requests_today = snap.today, snap.month, snap.requests_today
        if charts:
            days = RANGES.get(self.range_label, 30)
            self.series = await asyncio.to_thread(_series, where.customer_id, days)
            self.budget = await asyncio.to_thread(_budget_card, where.customer_id)
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
    @workspace_event(clearing=("budget_error", "budget_saved"), permission="budgets.manage")
    async def save_budget(self, where: Workspace, form: dict[str, str]) -> EventSpec | None:
        """Set the workspace's budget (an empty monthly and low-balance amount clears it)."""
        try:
            await asyncio.to_thread(_save_budget, where, form)
        except CreditdashError as exc:
            self.budget_error = exc.message
            return None
        self.budget = await asyncio.to_thread(_budget_card, where.customer_id)
        self.budget_saved = "Budget saved." if self.budget["set"] else "Budget removed."
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
    def can_manage_budget(self) -> bool:
        # Only what the form shows: save_budget checks the role again, as the database has it.
        return roles.allows(self.workspace_role or None, budgets.PERMISSION)

    @rx.var
    def has_usage(self) -> bool:
        return len(self.series) > 0
