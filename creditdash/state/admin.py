"""The operator's home. The admin role is checked on the server in every handler."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec
from sqlmodel import Session

from creditdash.accounts import customers
from creditdash.billing import adjustments, ledger
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.errors import CreditdashError
from creditdash.core.money import format_credits
from creditdash.state import forms
from creditdash.state.session import SessionState


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


def _customers(search: str) -> list[CustomerRow]:
    with db.session_scope(readonly=True) as session:
        rows: list[CustomerRow] = []
        for customer in customers.list_customers(session, search=search, limit=100):
            balance = customers.customer_balance(session, customer.id).as_json()
            rows.append(
                CustomerRow(
                    id=customer.id,
                    name=customer.name,
                    email=customer.email,
                    status=customer.status,
                    balance=balance["balance"],
                    held=balance["held"],
                    available=balance["available"],
                    allowed_models=", ".join(json.loads(customer.allowed_models_json))
                    if customer.allowed_models_json
                    else "",
                    credit_limit=format_credits(
                        ledger.get_balance(
                            session, ledger.customer_account_id(session, customer.id)
                        ).credit_limit_micros
                    ),
                )
            )
        return rows


def _verify() -> list[str]:
    with db.session_scope(readonly=True, snapshot=True) as session:
        return ledger.verify(session)


class AdminBase(SessionState):
    """Every admin handler starts with _admin(): the role is checked on the server, per event."""

    admin_error: str = ""
    admin_notice: str = ""

    async def _admin(self) -> Actor | EventSpec:
        who = await self._signed_in()
        if who is not None and who.is_platform_admin:
            return Actor.user(who.user_id, who.email)
        self.admin_error = self.admin_notice = ""
        return rx.redirect("/" if who is None else "/home")

    async def _run(self, work: Callable[[], object], done: str) -> None:
        """Run a service call off the event loop; its refusal becomes the page's error."""
        self.admin_error = self.admin_notice = ""
        try:
            await asyncio.to_thread(work)
        except CreditdashError as exc:
            self.admin_error = exc.message
            return
        self.admin_notice = done


def _apply(work: Callable[[Session], object]) -> Callable[[], object]:
    def run() -> object:
        with db.session_scope() as session:
            return work(session)

    return run


class AdminState(AdminBase):
    customers: list[CustomerRow] = []
    ledger_problems: list[str] = []
    ledger_checked: bool = False
    search: str = ""
    # One idempotency key per opened adjustment form: a double submit moves credits once.
    adjust_key: str = ""

    @rx.event
    async def load(self) -> EventSpec | None:
        refused = await self._refuse_non_admin()
        if refused is not None:
            return refused
        self.customers = await asyncio.to_thread(_customers, self.search)
        self.ledger_problems = await asyncio.to_thread(_verify)
        self.ledger_checked = True
        self.adjust_key = secrets.token_hex(12)
        return None

    @rx.event
    async def set_search(self, value: str) -> EventSpec | None:
        refused = await self._refuse_non_admin()
        if refused is not None:
            return refused
        self.search = value[:100]
        self.customers = await asyncio.to_thread(_customers, self.search)
        return None

    async def _refuse_non_admin(self) -> EventSpec | None:
        actor = await self._admin()
        if isinstance(actor, Actor):
            return None
        self.customers, self.ledger_problems, self.ledger_checked = [], [], False
        return actor

    @rx.event
    async def adjust(self, form: dict[str, str]) -> EventSpec | None:
        """Grant or take back credits, with a reason (audited); one form submission, one key."""
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
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
                idempotency_key=f"admin-adjust:{key}",
            )

        await self._run(_apply(work), "Balance adjusted.")
        if not self.admin_error:
            self.adjust_key = secrets.token_hex(12)
        self.customers = await asyncio.to_thread(_customers, self.search)
        return None

    @rx.event
    async def set_status(self, customer_id: str, status: str) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        await self._run(
            _apply(
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
    async def set_models(self, form: dict[str, str]) -> EventSpec | None:
        """The workspace's model allow-list; empty lifts it (audited)."""
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        customer_id = str(form.get("customer_id") or "")
        names = [m.strip() for m in str(form.get("models") or "").split(",") if m.strip()]
        await self._run(
            _apply(
                lambda s: customers.set_allowed_models(
                    s, customer_id=customer_id, models=names or None, actor=actor
                )
            ),
            "Model allow-list saved; keys follow within seconds.",
        )
        self.customers = await asyncio.to_thread(_customers, self.search)
        return None

    @rx.event
    async def set_limit(self, form: dict[str, str]) -> EventSpec | None:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        customer_id = str(form.get("customer_id") or "")

        def work(session: Session) -> object:
            micros = forms.credits(form, "limit", field="credit limit", default="0")
            customers.set_credit_limit(
                session,
                customer_id=customer_id,
                credit_limit_micros=micros,
                actor=actor,
                reason=str(form.get("reason") or ""),
            )
            return None

        await self._run(_apply(work), "Credit limit saved.")
        self.customers = await asyncio.to_thread(_customers, self.search)
        return None
