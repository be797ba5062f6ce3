"""The operator's home: customers with their balances, the books' health, and adjustments.

Every handler is an @admin_event: the admin role is checked on the server first (state/base.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import customers
from creditdash.billing import adjustments, balances, budgets, codes, health
from creditdash.billing.payments import autotopup_rules
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.db import Session
from creditdash.core.money import format_credits
from creditdash.state import forms
from creditdash.state.base import AdminBase, admin_event, with_session


class CustomerRow(TypedDict):
    id: str
    name: str
    email: str
    status: str
    balance: str
    held: str
    available: str
    credit_limit: str
    allowed_models: str
    # This month's spend against the workspace's budget, e.g. "2.000000 / 10.000000 (20%, hard)".
    budget: str
    # The auto top-up rule in a few words ("active: below 5.000000, Starter x1"), or "—".
    autotopup: str
    autotopup_status: str


def _budget_text(status: budgets.BudgetStatus | None) -> str:
    if status is None or status.monthly_budget_micros is None:
        return "—"
    return (
        f"{format_credits(status.spent_micros)} / {format_credits(status.monthly_budget_micros)}"
        f" ({status.percent}%, {'hard' if status.hard else 'soft'})"
    )


def _customers(search: str) -> list[CustomerRow]:
    with db.session_scope(readonly=True) as session:
        found = balances.customers_with_balances(session, search=search, limit=100)
        statuses = budgets.budget_statuses(session)
        topups = autotopup_rules.rule_summaries(session)
    return [
        CustomerRow(
            id=row.customer.id,
            name=row.customer.name,
            email=row.customer.email,
            status=row.customer.status,
            balance=format_credits(row.posted_micros),
            held=format_credits(row.held_micros),
            available=format_credits(row.available_micros),
            allowed_models=", ".join(json.loads(row.customer.allowed_models_json))
            if row.customer.allowed_models_json
            else "",
            credit_limit=format_credits(row.credit_limit_micros),
            budget=_budget_text(statuses.get(row.customer.id)),
            autotopup=topups.get(row.customer.id, "—"),
            autotopup_status=topups.get(row.customer.id, "").split(":")[0],
        )
        for row in found
    ]


def _verify() -> list[str]:
    """The same check as `creditdash ledger verify`: the ledger's invariants and the payments'."""
    with db.session_scope(readonly=True, snapshot=True) as session:
        return health.check(session)


class AdminState(AdminBase):
    customers: list[CustomerRow] = []
    ledger_problems: list[str] = []
    ledger_checked: bool = False
    search: str = ""
    # One idempotency key per opened adjustment form: a double submit moves credits once.
    adjust_key: str = ""

    async def _admin(self) -> Actor | EventSpec:
        """As for every admin state; a refused caller also loses the customer list and the
        books' health, so nothing of them stays in a tab that is no longer an admin's."""
        actor = await super()._admin()
        if not isinstance(actor, Actor):
            self.customers, self.ledger_problems, self.ledger_checked = [], [], False
        return actor

    @rx.event
    @admin_event
    async def load(self, _actor: Actor) -> EventSpec | None:
        self.customers = await asyncio.to_thread(_customers, self.search)
        self.ledger_problems = await asyncio.to_thread(_verify)
        self.ledger_checked = True
        self.adjust_key = secrets.token_hex(12)
        return None

    @rx.event
    @admin_event
    async def set_search(self, _actor: Actor, value: str) -> EventSpec | None:
        self.search = value[:100]
        self.customers = await asyncio.to_thread(_customers, self.search)
        return None

    @rx.event
    @admin_event
    async def adjust(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:
        """Grant or take back credits, with a reason (audited); one form submission, one key."""
        customer_id = str(form.get("customer_id") or "")
        direction = str(form.get("direction") or "grant")
        reason = str(form.get("reason") or "")
        key = str(form.get("key") or "")

        def work(session: Session) -> object:
            micros = forms.credits(form, "amount", field="amount")
            act = adjustments.grant_credits if direction == "grant" else adjustments.debit_credits
            return act(
                session,
                customer_id=customer_id,
                amount_micros=micros,
                reason=reason,
                actor=actor,
                idempotency_key=codes.admin_adjustment_key(key),
            )

        await self._run(with_session(work), "Balance adjusted.")
        if not self.admin_error:
            self.adjust_key = secrets.token_hex(12)
        self.customers = await asyncio.to_thread(_customers, self.search)
        return None

    @rx.event
    @admin_event
    async def set_status(self, actor: Actor, customer_id: str, status: str) -> EventSpec | None:
        await self._run(
            with_session(
                lambda s: customers.set_status(
                    s,
                    customer_id=customer_id,
                    status=status,
                    actor=actor,
                    reason="set in the admin UI",
                )
            ),
            f"Customer {status}.",
        )
        self.customers = await asyncio.to_thread(_customers, self.search)
        return None

    @rx.event
    @admin_event
    async def set_autotopup(self, actor: Actor, customer_id: str, status: str) -> EventSpec | None:
        """Pause (or resume) a workspace's automatic top-ups (audited)."""
        await self._run(
            with_session(
                lambda s: autotopup_rules.set_status(
                    s,
                    customer_id=customer_id,
                    status="paused" if status == "paused" else "active",
                    actor=actor,
                    reason="set in the admin UI",
                )
            ),
            "Automatic top-ups paused." if status == "paused" else "Automatic top-ups resumed.",
        )
        self.customers = await asyncio.to_thread(_customers, self.search)
        return None

    @rx.event
    @admin_event
    async def set_models(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:
        """The workspace's model allow-list; empty lifts it (audited)."""
        customer_id = str(form.get("customer_id") or "")
        names = [m.strip() for m in str(form.get("models") or "").split(",") if m.strip()]
        await self._run(
            with_session(
                lambda s: customers.set_allowed_models(
                    s, customer_id=customer_id, models=names or None, actor=actor
                )
            ),
            "Model allow-list saved; keys follow within seconds.",
        )
        self.customers = await asyncio.to_thread(_customers, self.search)
        return None

    @rx.event
    @admin_event
    async def set_limit(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:
        customer_id = str(form.get("customer_id") or "")

        def work(session: Session) -> object:
            micros = forms.credits(form, "limit", field="credit limit", default="0")
            balances.set_credit_limit(
                session,
                customer_id=customer_id,
                credit_limit_micros=micros,
                actor=actor,
                reason=str(form.get("reason") or ""),
            )
            return None

        await self._run(with_session(work), "Credit limit saved.")
        self.customers = await asyncio.to_thread(_customers, self.search)
        return None
