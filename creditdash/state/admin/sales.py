"""What is on sale (credit packages) and what was sold (invoices and credit notes).

Every handler is an @admin_event: the admin role is checked on the server first (state/base.py).
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.billing.invoicing import invoices
from creditdash.billing.payments import packages
from creditdash.billing.payments.packages import PackageSpec, save_package
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.db import Session
from creditdash.core.money import format_credits, format_minor
from creditdash.state import forms
from creditdash.state.base import AdminBase, admin_event, with_session


class PackageRow(TypedDict):
    name: str
    kind: str
    currency: str
    unit_price: str
    credits: str
    bonus: str
    min_quantity: int
    max_quantity: int
    active: bool
    description: str


class AdminInvoiceRow(TypedDict):
    number: str
    kind: str
    issued: str
    customer_id: str
    order_id: str
    gross: str
    tax_scheme: str
    url: str


def _catalog_of_sales() -> tuple[list[PackageRow], list[AdminInvoiceRow]]:

    with db.session_scope(readonly=True) as session:
        package_rows = [
            PackageRow(
                name=p.name,
                kind=p.kind,
                currency=p.currency,
                unit_price=format_minor(p.unit_price_minor, p.currency),
                credits=format_credits(p.credits_micros),
                bonus=format_credits(p.bonus_micros),
                min_quantity=p.min_quantity,
                max_quantity=p.max_quantity,
                active=p.active,
                description=p.description,
            )
            for p in packages.list_packages(session)
        ]
        invoice_rows = [
            AdminInvoiceRow(
                number=i.number,
                kind=i.kind.replace("_", " "),
                issued=i.issued_at.strftime("%Y-%m-%d"),
                customer_id=i.customer_id,
                order_id=i.order_id,
                gross=f"{format_minor(i.gross_minor, i.currency)} {i.currency}",
                tax_scheme=i.tax_scheme.replace("_", " "),
                url=f"/billing/invoices/{i.number}.pdf",
            )
            for i in invoices.list_invoices(session, limit=200)
        ]
    return package_rows, invoice_rows


class AdminSalesState(AdminBase):
    packages: list[PackageRow] = []
    invoices: list[AdminInvoiceRow] = []

    async def _reload(self) -> None:
        self.packages, self.invoices = await asyncio.to_thread(_catalog_of_sales)

    @rx.event
    @admin_event
    async def load(self, actor: Actor) -> EventSpec | None:
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def save_package(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:

        currency = str(form.get("currency") or "EUR")

        def work(session: Session) -> object:
            spec = PackageSpec(
                name=str(form.get("name") or ""),
                kind="custom" if forms.checked(form, "custom") else "standard",
                currency=currency,
                unit_price_minor=forms.money(form, "unit_price", currency, field="price"),
                credits_micros=forms.credits(form, "credits", field="credits"),
                bonus_micros=forms.credits(form, "bonus", field="bonus", default="0"),
                min_quantity=forms.whole(form, "min_quantity", "1"),
                max_quantity=forms.whole(form, "max_quantity", "1"),
                description=str(form.get("description") or ""),
                active=forms.checked(form, "active"),
            )
            return save_package(session, spec=spec, actor=actor)

        await self._run(with_session(work), f"Package {form.get('name')} saved.")
        await self._reload()
        return None
