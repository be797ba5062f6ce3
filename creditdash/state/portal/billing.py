"""Billing: buy credits (final amount with tax first), checkout and its return, bank-transfer
orders, order history, invoices, the billing profile and statements."""

from __future__ import annotations

import asyncio
import json

import reflex as rx
from reflex.event import EventSpec

from creditdash.billing.invoicing import profiles
from creditdash.billing.payments import placing, refunds
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.errors import CreditdashError
from creditdash.core.settings import get_settings
from creditdash.core.timeutil import utcnow
from creditdash.state.base import PortalState, Workspace, workspace_event
from creditdash.state.portal import billing_rows


def _open(customer_id: str, actor: Actor, package_name: str, quantity: int, manual: bool) -> str:
    """The checkout page's address, or (bank transfer) what to pay and how: read from the
    stored order, never from the quote on screen."""
    placed = placing.place(
        customer_id=customer_id,
        package_name=package_name,
        quantity=quantity,
        actor=actor,
        manual=manual,
        accept_terms=True,
    )
    if placed.method == "checkout":
        return placed.checkout_url or ""
    amount = billing_rows.money(placed.gross_minor, placed.currency)
    return (
        f"Order {placed.order_id} is open. Transfer {amount} "
        f"with the reference {placed.transfer_reference}; your credits arrive once it "
        "is approved."
    )


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
    packages: list[billing_rows.PackageCard] = []
    orders: list[billing_rows.OrderRow] = []
    invoices: list[billing_rows.InvoiceRow] = []
    profile: billing_rows.ProfileForm = billing_rows.EMPTY_PROFILE
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
        page = await asyncio.to_thread(billing_rows.load_page, where.customer_id)
        self.packages, self.orders, self.invoices = page.packages, page.orders, page.invoices
        self.profile, self.has_profile = page.profile, page.has_profile
        self.bank_details, self.seller_name = page.bank_details, page.seller_name
        self.loaded = True

    async def _requote(self, where: Workspace) -> None:
        self.error = ""
        if not self.selected:
            return
        try:
            q = await asyncio.to_thread(
                billing_rows.quote_text, where.customer_id, self.selected, self.quantity
            )
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
    @workspace_event(permission="billing.read")
    async def load(self, where: Workspace) -> EventSpec | None:
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
        """While a payment is pending, look every 2 s whether its webhook has credited it
        (with nothing pending, no database work at all)."""
        if not self.pending_order:
            return None
        return await self._poll_pending()

    @workspace_event(permission="billing.read")
    async def _poll_pending(self, where: Workspace) -> EventSpec | None:
        try:
            status, available = await asyncio.to_thread(
                billing_rows.order_status, where.customer_id, self.pending_order
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
    @workspace_event(permission="billing.manage")
    async def choose(self, where: Workspace, name: str) -> EventSpec | None:
        self.selected, self.quantity, self.accept_terms = name, 1, False
        await self._requote(where)
        return None

    @rx.event
    @workspace_event(permission="billing.manage")
    async def set_quantity(self, where: Workspace, value: str) -> EventSpec | None:
        self.quantity = int(value) if value.isascii() and value.isdigit() and len(value) < 5 else 1
        self.accept_terms = False
        await self._requote(where)
        return None

    @rx.event
    def set_accept_terms(self, value: bool) -> None:
        self.accept_terms = bool(value)

    @workspace_event(clearing=("error", "notice"), permission="billing.manage")
    async def _start(self, where: Workspace, manual: bool) -> EventSpec | None:
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
    @workspace_event(clearing=("profile_error", "profile_saved"), permission="billing.manage")
    async def save_profile(self, where: Workspace, form: dict[str, object]) -> EventSpec | None:
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
