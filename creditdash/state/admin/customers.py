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
from creditdash.core.errors import CreditdashError, ValidationFailed
from creditdash.core.money import format_credits
from creditdash.core.numbers import credits_text
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
    # The limit exactly as the form takes it back ("5.000000"); credit_limit is for reading.
    limit_form: str
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
        f"{credits_text(status.spent_micros)} / {credits_text(status.monthly_budget_micros)}"
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
            balance=credits_text(row.posted_micros),
            held=credits_text(row.held_micros),
            available=credits_text(row.available_micros),
            allowed_models=", ".join(json.loads(row.customer.allowed_models_json))
            if row.customer.allowed_models_json
            else "",
            credit_limit=credits_text(row.credit_limit_micros),
            limit_form=format_credits(row.credit_limit_micros),
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


def adjust_form_id(customer_id: str) -> str:
    return f"adjust-{customer_id}"


class AdminState(AdminBase):
    customers: list[CustomerRow] = []
    ledger_problems: list[str] = []
    ledger_checked: bool = False
    search: str = ""
    # One idempotency key per opened adjustment form: a double submit moves credits once.
    adjust_key: str = ""
    # The open confirmation ("" when none) and what it will do (server only, never sent).
    confirm_title: str = ""
    confirm_text: str = ""
    confirm_action: str = ""
    # The customer whose Manage dialog shows the confirmation (the rows each have one).
    confirm_for: str = ""
    _pending_form: dict[str, str] = {}

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
        """Grant or take back credits at once (no confirmation; ask_adjust asks first)."""
        return await self._adjust(actor, form)

    @rx.event
    @admin_event
    async def ask_adjust(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:
        """A grant runs at once; a debit is checked and shown in a confirmation first (this
        writes nothing: confirm() does)."""
        form = {k: str(v) for k, v in form.items()}
        if str(form.get("direction") or "grant") == "grant":
            return await self._adjust(actor, form)
        self.admin_error = self.admin_notice = ""
        try:
            micros = forms.credits(form, "amount", field="amount")
            if not str(form.get("reason") or "").strip():
                raise ValidationFailed("a reason is required")
        except CreditdashError as exc:
            self.admin_error = exc.message
            return None
        name = self._name(str(form.get("customer_id") or ""))
        self._ask(
            "adjust",
            form,
            title="Take back credits?",
            text=f"Remove {credits_text(micros)} credits from {name}'s balance? "
            f"Reason: {form.get('reason', '').strip()}. This is audited.",
            action="Take back credits",
        )
        return None

    @rx.event
    @admin_event
    async def ask_status(self, actor: Actor, customer_id: str, status: str) -> EventSpec | None:
        """Reactivating runs at once; suspending asks first (this writes nothing)."""
        if status != "suspended":
            await self._set_status(actor, customer_id, status)
            return None
        self._ask(
            "status",
            {"customer_id": customer_id, "status": status},
            title="Suspend this customer?",
            text=f"Suspend {self._name(customer_id)}? Their API keys stop working within "
            "seconds and they cannot buy credits until reactivated.",
            action="Suspend",
        )
        return None

    @rx.event
    @admin_event
    async def confirm(self, actor: Actor) -> EventSpec | None:
        """Do what the open confirmation described, once."""
        pending = self._pending_form
        self._pending_form, self.confirm_text, self.confirm_for = {}, "", ""
        if pending.get("kind") == "adjust":
            return await self._adjust(actor, pending)
        if pending.get("kind") == "status":
            await self._set_status(actor, pending["customer_id"], pending["status"])
        return None

    @rx.event
    def cancel_confirm(self) -> None:
        self._pending_form, self.confirm_text, self.confirm_for = {}, "", ""

    def _ask(self, kind: str, form: dict[str, str], *, title: str, text: str, action: str) -> None:
        self.admin_error = self.admin_notice = ""
        self._pending_form = {**form, "kind": kind}
        self.confirm_for = form.get("customer_id", "")
        self.confirm_title, self.confirm_text, self.confirm_action = title, text, action

    def _name(self, customer_id: str) -> str:
        return next((r["name"] for r in self.customers if r["id"] == customer_id), customer_id)

    async def _adjust(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:
        """Move the credits; once moved, empty that customer's amount and reason (a refusal
        keeps them). Only those two: the direction stays as shown and as it will be sent."""
        customer_id = str(form.get("customer_id") or "")
        direction = str(form.get("direction") or "grant")
        reason = str(form.get("reason") or "")
        key = str(form.get("key") or "")
        moved: list[int] = []

        def work(session: Session) -> object:
            micros = forms.credits(form, "amount", field="amount")
            act = adjustments.grant_credits if direction == "grant" else adjustments.debit_credits
            act(
                session,
                customer_id=customer_id,
                amount_micros=micros,
                reason=reason,
                actor=actor,
                idempotency_key=codes.admin_adjustment_key(key),
            )
            moved.append(micros)
            return None

        name = self._name(customer_id)
        await self._run(with_session(work), "")
        if not self.admin_error:
            amount = credits_text(moved[0]) if moved else ""
            self.admin_notice = (
                f"Granted {amount} credits to {name}."
                if direction == "grant"
                else f"Took back {amount} credits from {name}."
            )
            self.adjust_key = secrets.token_hex(12)
        self.customers = await asyncio.to_thread(_customers, self.search)
        if self.admin_error:
            return None
        form_id = json.dumps(adjust_form_id(customer_id))
        return rx.call_script(
            f"document.getElementById({form_id})?.querySelectorAll("
            "'input[name=amount], input[name=reason]').forEach((i) => { i.value = ''; })"
        )

    @rx.event
    @admin_event
    async def set_status(self, actor: Actor, customer_id: str, status: str) -> EventSpec | None:
        """Set the status at once (no confirmation; ask_status asks first)."""
        await self._set_status(actor, customer_id, status)
        return None

    async def _set_status(self, actor: Actor, customer_id: str, status: str) -> None:
        name = self._name(customer_id)
        done = (
            f"{name} suspended; their keys stop within seconds."
            if status == "suspended"
            else f"{name} reactivated."
        )
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
            done,
        )
        self.customers = await asyncio.to_thread(_customers, self.search)

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
