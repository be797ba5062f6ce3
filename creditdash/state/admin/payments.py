"""Payments: the last reconcile run (what it credited, the mismatches, the sessions without an
order), open disputes, and "Run reconcile now" (billing/payments/reconcile.py, disputes.py).

Every handler is an @admin_event: the admin role is checked on the server first (state/base.py).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts.customers import get_customer
from creditdash.billing.payments import disputes, reconcile
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.errors import CreditdashError, NotFound
from creditdash.core.money import format_credits, format_minor
from creditdash.state.base import AdminBase, admin_event


class FindingRow(TypedDict):
    kind: str
    provider: str
    session_id: str
    order_id: str
    paid: str
    order_amount: str
    action: str


class DisputeRow(TypedDict):
    customer: str
    order_id: str
    amount: str
    frozen: str
    shortfall: str
    reason: str
    opened: str


def _when(text: str | None) -> str:
    return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M UTC") if text else ""


def _findings(shown: dict[str, Any]) -> list[FindingRow]:
    rows = []
    for kind in ("credited", "mismatches", "unmatched"):
        for item in shown[kind]:
            rows.append(
                FindingRow(
                    kind={"credited": "paid, not credited", "mismatches": "mismatch"}.get(
                        kind, "no order"
                    ),
                    provider=str(item.get("provider", "")),
                    session_id=str(item.get("session_id", "")),
                    order_id=str(item.get("order_id", "")),
                    paid=f"{item.get('paid', '')} {item.get('paid_currency', '')}",
                    order_amount=f"{item.get('order_amount', '')} {item.get('order_currency', '')}",
                    action=str(item.get("action", "")),
                )
            )
    return rows


def _summary(shown: dict[str, Any] | None) -> str:
    if shown is None:
        return "No reconcile run yet."
    counts = shown["counts"]
    text = (
        f"Run {shown['run_id']} ({shown['trigger']}) at {_when(shown['started_at'])}, window "
        f"{_when(shown['window']['since'])} to {_when(shown['window']['until'])}: "
        f"{counts['sessions_seen']} paid sessions, {counts['credited']} credited now, "
        f"{counts['already_credited']} already credited, {counts['mismatches']} mismatches, "
        f"{counts['unmatched']} without an order."
    )
    return text + (f" Error: {shown['error']}" if shown["error"] else "")


def _customer_name(session: Any, customer_id: str) -> str:
    try:
        return get_customer(session, customer_id).name
    except NotFound:
        return customer_id


def _load() -> tuple[str, list[FindingRow], list[DisputeRow]]:
    with db.session_scope(readonly=True) as session:
        run = reconcile.last_run(session)
        shown = reconcile.describe_run(run) if run is not None else None
        rows = [
            DisputeRow(
                customer=_customer_name(session, d.customer_id),
                order_id=d.order_id,
                amount=f"{format_minor(d.amount_minor, d.currency)} {d.currency}",
                frozen=format_credits(d.frozen_micros),
                shortfall=format_credits(d.shortfall_micros) if d.shortfall_micros else "",
                reason=d.reason,
                opened=d.opened_at.strftime("%Y-%m-%d %H:%M"),
            )
            for d in disputes.list_disputes(session, status="open")
        ]
    return _summary(shown), _findings(shown) if shown else [], rows


def _run(actor: Actor) -> str:
    report = reconcile.reconcile(since=reconcile.parse_since(None), trigger=f"admin:{actor.label}")
    return (
        f"Reconcile run {report.run_id}: {len(report.credited)} credited, "
        f"{len(report.mismatches)} mismatches, {len(report.unmatched)} without an order"
        + (f"; error: {report.error}" if report.error else "")
    )


class AdminPaymentsState(AdminBase):
    summary: str = ""
    findings: list[FindingRow] = []
    open_disputes: list[DisputeRow] = []

    async def _reload(self) -> None:
        self.summary, self.findings, self.open_disputes = await asyncio.to_thread(_load)

    @rx.event
    @admin_event
    async def load(self, actor: Actor) -> EventSpec | None:
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def run_now(self, actor: Actor) -> EventSpec | None:
        """The same service as `creditdash payments reconcile` and the daily job."""
        self.admin_error = self.admin_notice = ""
        try:
            self.admin_notice = await asyncio.to_thread(_run, actor)
        except CreditdashError as exc:
            self.admin_error = exc.message
        await self._reload()
        return None
