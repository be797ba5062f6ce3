"""The operator's home. The admin role is checked on the server in every handler."""

from __future__ import annotations

import asyncio
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash import db
from creditdash.accounts import customers
from creditdash.billing import ledger
from creditdash.state.session import SessionState


class CustomerRow(TypedDict):
    id: str
    name: str
    email: str
    status: str
    balance: str
    held: str
    available: str


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
                )
            )
        return rows


def _verify() -> list[str]:
    with db.session_scope(readonly=True, snapshot=True) as session:
        return ledger.verify(session)


class AdminState(SessionState):
    customers: list[CustomerRow] = []
    ledger_problems: list[str] = []
    ledger_checked: bool = False
    search: str = ""

    @rx.event
    async def load(self) -> EventSpec | None:
        refused = await self._refuse_non_admin()
        if refused is not None:
            return refused
        self.customers = await asyncio.to_thread(_customers, self.search)
        self.ledger_problems = await asyncio.to_thread(_verify)
        self.ledger_checked = True
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
        """Every admin handler starts here: the role is checked on the server, per event."""
        who = await self._signed_in()
        if who is not None and who.is_platform_admin:
            return None
        self.customers, self.ledger_problems, self.ledger_checked = [], [], False
        return rx.redirect("/" if who is None else "/home")
