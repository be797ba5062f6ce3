"""The signed-in customer's home: their workspaces and balances."""

from __future__ import annotations

import asyncio
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash import db
from creditdash.accounts import customers
from creditdash.state.session import SessionState


class WorkspaceRow(TypedDict):
    id: str
    name: str
    role: str
    balance: str
    held: str
    available: str


def _workspaces(user_id: int) -> list[WorkspaceRow]:
    with db.session_scope(readonly=True) as session:
        rows: list[WorkspaceRow] = []
        for customer, role in customers.customers_of_user(session, user_id):
            balance = customers.customer_balance(session, customer.id).as_json()
            rows.append(
                WorkspaceRow(
                    id=customer.id,
                    name=customer.name,
                    role=role,
                    balance=balance["balance"],
                    held=balance["held"],
                    available=balance["available"],
                )
            )
        return rows


class HomeState(SessionState):
    workspaces: list[WorkspaceRow] = []
    loaded: bool = False

    @rx.event
    async def load(self) -> EventSpec | None:
        who = await self._signed_in()
        if who is None:
            return rx.redirect("/")
        self.workspaces = await asyncio.to_thread(_workspaces, who.user_id)
        self.loaded = True
        return None
