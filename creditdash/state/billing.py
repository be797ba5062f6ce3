"""Billing: buy credits (final amount with tax first), checkout and its return, bank-transfer
orders, order history, invoices, the billing profile and statements."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts.customers import customer_balance
from creditdash.billing.invoicing import invoices, profiles
from creditdash.billing.payments import checkout, orders, packages, refunds
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.errors import CreditdashError
from creditdash.core.money import format_credits, format_minor
from creditdash.core.settings import get_settings
from creditdash.core.timeutil import utcnow
from creditdash.state.portal import PortalState, Workspace


class PackageCard(TypedDict):
    name: str
    description: str
    price: str
    credits: str
    bonus: str
    min_quantity: int
    max_quantity: int
    manual_only: bool


class OrderRow(TypedDict):
    id: str
    created: str
    package: str
    quantity: int
    credits: str
    gross: str
    status: str
    method: str
    reference: str
    checkout_url: str


class InvoiceRow(TypedDict):
    number: str
    kind: str
    issued: str
    gross: str
    tax_scheme: str
    url: str


class ProfileForm(TypedDict):
    legal_name: str
    country: str
    region: str
    is_business: bool
    tax_id: str
    address_line1: str
    address_line2: str
    city: str
    postal_code: str
    billing_email: str


EMPTY_PROFILE = ProfileForm(
    legal_name="",
    country="",
    region="",
    is_business=False,
    tax_id="",
    address_line1="",
    address_line2="",
    city="",
    postal_code="",
    billing_email="",
)


@dataclass(frozen=True)
class Page:
    packages: list[PackageCard]
    orders: list[OrderRow]
    invoices: list[InvoiceRow]
    profile: ProfileForm
    has_profile: bool
    bank_details: str
    seller_name: str


def _money(minor: int, currency: str) -> str:
    return f"{format_minor(minor, currency)} {currency}"


def _page(customer_id: str) -> Page:
    with db.session_scope(readonly=True) as session:
        cards = [
            PackageCard(
                name=p.name,
                description=p.description,
                price=_money(p.unit_price_minor, p.currency),
                credits=format_credits(p.credits_micros).rstrip("0").rstrip("."),
                bonus=format_credits(p.bonus_micros).rstrip("0").rstrip("."),
                min_quantity=p.min_quantity,
                max_quantity=p.max_quantity,
                manual_only=p.manual_only,
            )
            for p in packages.list_packages(session, active_only=True)
        ]
        order_rows = [
            OrderRow(
                id=o.id,
                created=o.created_at.strftime("%Y-%m-%d %H:%M"),
                package=o.package_name,
                quantity=o.quantity,
                credits=format_credits(o.credits_micros + o.bonus_micros).rstrip("0").rstrip("."),
                gross=_money(o.gross_minor, o.currency),
                status=o.status,
                method=o.method,
                reference=o.transfer_reference or "",
                checkout_url=o.checkout_url
                if o.status == "awaiting_payment" and o.checkout_url
                else "",
            )
            for o in orders.list_orders(session, customer_id=customer_id, limit=50)
        ]
        invoice_rows = [
            InvoiceRow(
                number=i.number,
                kind=i.kind.replace("_", " "),
                issued=i.issued_at.strftime("%Y-%m-%d"),
                gross=_money(i.gross_minor, i.currency),
                tax_scheme=i.tax_scheme.replace("_", " "),
                url=f"/billing/invoices/{i.number}.pdf",
            )
            for i in invoices.list_invoices(session, customer_id=customer_id, limit=100)
        ]
        profile = profiles.get_billing_profile(session, customer_id)
        try:
            seller = profiles.get_seller(session)
            bank, seller_name = seller.bank_details, seller.legal_name
        except CreditdashError:
            bank, seller_name = "", ""
    form = (
        EMPTY_PROFILE
        if profile is None
        else ProfileForm(
            legal_name=profile.legal_name,
            country=profile.country,
            region=profile.region,
            is_business=profile.is_business,
            tax_id=profile.tax_id,
            address_line1=profile.address_line1,
            address_line2=profile.address_line2,
            city=profile.city,
            postal_code=profile.postal_code,
            billing_email=profile.billing_email,
        )
    )
    return Page(cards, order_rows, invoice_rows, form, profile is not None, bank, seller_name)


@dataclass(frozen=True)
class QuoteText:
    net: str
    tax: str
    gross: str
    tax_label: str
    wording: str
    credits: str


def _quote(customer_id: str, package_name: str, quantity: int) -> QuoteText:
    with db.session_scope(readonly=True) as session:
        package = packages.find_package(session, package_name)
        q = orders.quote(session, customer_id=customer_id, package=package, quantity=quantity)
    rate = f"{q.rate_bp / 100:g}%"
    label = {
        "standard": f"{q.tax_name} {rate}",
        "reverse_charge": "Reverse charge (0%)",
        "out_of_scope": "No tax (outside the seller's registrations)",
        "exempt": "Exempt",
    }.get(q.tax_scheme, q.tax_scheme)
    return QuoteText(
        net=_money(q.net_minor, q.currency),
        tax=_money(q.tax_minor, q.currency),
        gross=_money(q.gross_minor, q.currency),
        tax_label=label,
        wording=q.wording,
        credits=format_credits(q.credits_micros + q.bonus_micros).rstrip("0").rstrip("."),
    )


def _open(customer_id: str, actor: Actor, package_name: str, quantity: int, manual: bool) -> str:
    with db.session_scope() as session:
        package = packages.find_package(session, package_name)
        order = orders.create_order(
            session,
            customer_id=customer_id,
            package=package,
            quantity=quantity,
            actor=actor,
            manual=manual,
            accept_terms=True,
        )
        order_id, method = order.id, order.method
        # What to pay and how comes from the order itself, never from the quote on screen.
        instructions = (
            f"Order {order.id} is open. Transfer {_money(order.gross_minor, order.currency)} "
            f"with the reference {order.transfer_reference}; your credits arrive once it "
            "is approved."
        )
    if method == "checkout":
        return checkout.open_checkout(order_id, customer_id=customer_id).checkout_url or ""
    return instructions


def _order_status(customer_id: str, order_id: str) -> tuple[str, str]:
    with db.session_scope(readonly=True) as session:
        order = orders.get_order(session, order_id, customer_id=customer_id)
        balance = customer_balance(session, customer_id)
        return order.status, format_credits(balance.available_micros)


def _save_profile(customer_id: str, actor: Actor, form: dict[str, object]) -> None:
    data = profiles.ProfileInput(
        legal_name=str(form.get("legal_name") or ""),
        country=str(form.get("country") or ""),
        region=str(form.get("region") or ""),
        is_business=form.get("is_business") in ("on", True, "true"),
        tax_id=str(form.get("tax_id") or ""),
        address_line1=str(form.get("address_line1") or ""),
        address_line2=str(form.get("address_line2") or ""),
        city=str(form.get("city") or ""),
        postal_code=str(form.get("postal_code") or ""),
        billing_email=str(form.get("billing_email") or ""),
    )
    with db.session_scope() as session:
        profiles.save_billing_profile(session, customer_id=customer_id, data=data, actor=actor)


class BillingState(PortalState):
    packages: list[PackageCard] = []
    orders: list[OrderRow] = []
    invoices: list[InvoiceRow] = []
    profile: ProfileForm = EMPTY_PROFILE
    has_profile: bool = False
    bank_details: str = ""
    seller_name: str = ""
    selected: str = ""
    quantity: int = 1
    quote_net: str = ""
    quote_tax: str = ""
    quote_gross: str = ""
    quote_tax_label: str = ""
    quote_wording: str = ""
    quote_credits: str = ""
    accept_terms: bool = False
    error: str = ""
    notice: str = ""
    profile_error: str = ""
    profile_saved: bool = False
    pending_order: str = ""
    statement_from: str = ""
    statement_to: str = ""
    loaded: bool = False
    busy: bool = False

    async def _reload(self, where: Workspace) -> None:
        page = await asyncio.to_thread(_page, where.customer_id)
        self.packages, self.orders, self.invoices = page.packages, page.orders, page.invoices
        self.profile, self.has_profile = page.profile, page.has_profile
        self.bank_details, self.seller_name = page.bank_details, page.seller_name
        self.loaded = True

    async def _requote(self, where: Workspace) -> None:
        self.error = ""
        if not self.selected:
            return
        try:
            q = await asyncio.to_thread(_quote, where.customer_id, self.selected, self.quantity)
        except CreditdashError as exc:
            self.error = exc.message
            self.quote_gross = ""
            return
        self.quote_net, self.quote_tax, self.quote_gross = q.net, q.tax, q.gross
        self.quote_tax_label, self.quote_wording, self.quote_credits = (
            q.tax_label,
            q.wording,
            q.credits,
        )

    @rx.event
    async def load(self) -> EventSpec | None:
        where = await self._require()
        if not isinstance(where, Workspace):
            return where
        self.error = self.notice = ""
        await self._reload(where)
        params = self.router.url.query_parameters
        today = utcnow().date()
        self.statement_from = self.statement_from or today.replace(day=1).isoformat()
        self.statement_to = self.statement_to or today.isoformat()
        if params.get("checkout") == "success" and params.get("order"):
            self.pending_order = params["order"]
            self.notice = "Payment pending: waiting for the payment provider's confirmation."
        elif params.get("checkout") == "cancelled":
            self.notice = "Checkout cancelled; nothing was charged."
        wanted = params.get("package", "")
        names = [p["name"] for p in self.packages]
        if wanted in names:
            self.selected = wanted
        elif not self.selected and names:
            self.selected = names[0]
        self.quantity = 1
        await self._requote(where)
        return None

    @rx.event
    async def tick(self, _now: str = "") -> EventSpec | None:
        """While a payment is pending, look every 2 s whether its webhook has credited it."""
        if not self.pending_order:
            return None
        where = await self._require()
        if not isinstance(where, Workspace):
            return where
        try:
            status, available = await asyncio.to_thread(
                _order_status, where.customer_id, self.pending_order
            )
        except CreditdashError:
            self.pending_order = ""
            return None
        if status == "paid":
            self.notice = f"Payment received. Available balance: {available} credits."
            self.pending_order = ""
            await self._reload(where)
        return None

    @rx.event
    async def choose(self, name: str) -> EventSpec | None:
        where = await self._require()
        if not isinstance(where, Workspace):
            return where
        self.selected, self.quantity, self.accept_terms = name, 1, False
        await self._requote(where)
        return None

    @rx.event
    async def set_quantity(self, value: str) -> EventSpec | None:
        where = await self._require()
        if not isinstance(where, Workspace):
            return where
        self.quantity = int(value) if value.isascii() and value.isdigit() and len(value) < 5 else 1
        self.accept_terms = False
        await self._requote(where)
        return None

    @rx.event
    def set_accept_terms(self, value: bool) -> None:
        self.accept_terms = bool(value)

    async def _start(self, manual: bool) -> EventSpec | None:
        self.error = self.notice = ""
        where = await self._require()
        if not isinstance(where, Workspace):
            return where
        if not self.accept_terms:
            self.error = "Accept the terms and the refund policy to continue."
            return None
        actor = Actor.user(where.user.user_id, where.user.email)
        self.busy = True
        try:
            result = await asyncio.to_thread(
                _open, where.customer_id, actor, self.selected, self.quantity, manual
            )
        except CreditdashError as exc:
            self.error = exc.message
            return None
        finally:
            self.busy = False
        if manual:
            await self._reload(where)
            self.notice = result
            self.accept_terms = False
            return None
        # The hosted payment page is not a dashboard route: a full navigation, same tab. The
        # sandbox's page is served by this app: keep the origin the customer is on.
        if "/sandbox/checkout/" in result:
            result = "/sandbox/checkout/" + result.split("/sandbox/checkout/", 1)[1]
        return rx.call_script(f"window.location.assign({json.dumps(result)})")

    @rx.event
    async def pay(self) -> EventSpec | None:
        return await self._start(manual=False)

    @rx.event
    async def request_manual(self) -> EventSpec | None:
        return await self._start(manual=True)

    @rx.event
    async def save_profile(self, form: dict[str, object]) -> EventSpec | None:
        self.profile_error, self.profile_saved = "", False
        where = await self._require()
        if not isinstance(where, Workspace):
            return where
        actor = Actor.user(where.user.user_id, where.user.email)
        try:
            await asyncio.to_thread(_save_profile, where.customer_id, actor, form)
        except CreditdashError as exc:
            self.profile_error = exc.message
            return None
        self.profile_saved = True
        await self._reload(where)
        await self._requote(where)
        return None

    @rx.event
    def set_statement_from(self, value: str) -> None:
        self.statement_from = value

    @rx.event
    def set_statement_to(self, value: str) -> None:
        self.statement_to = value

    @rx.var
    def statement_url(self) -> str:
        from urllib.parse import urlencode

        query = {
            "customer": self.workspace_id,
            "from": self.statement_from,
            "to": self.statement_to,
        }
        return "/billing/statement.csv?" + urlencode(query)

    @rx.var
    def selected_manual_only(self) -> bool:
        return any(p["name"] == self.selected and p["manual_only"] for p in self.packages)

    @rx.var
    def quantity_options(self) -> list[str]:
        card = next((p for p in self.packages if p["name"] == self.selected), None)
        if card is None:
            return ["1"]
        return [str(n) for n in range(card["min_quantity"], card["max_quantity"] + 1)]

    @rx.var
    def refund_policy(self) -> str:
        settings = get_settings()
        return f"{refunds.policy_text(settings)} Terms version {settings.terms_version}."
