"""The billing page's rows and what they are read from: packages on sale, orders, invoices,
the billing profile, the quote for the chosen package (strings ready to show)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from creditdash.billing.balances import customer_balance
from creditdash.billing.invoicing import invoices, profiles
from creditdash.billing.payments import orders, packages
from creditdash.core import db
from creditdash.core.errors import CreditdashError
from creditdash.core.money import format_minor
from creditdash.core.numbers import credits_text, package_credits_text


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


def money(minor: int, currency: str) -> str:
    return f"{format_minor(minor, currency)} {currency}"


def load_page(customer_id: str) -> Page:
    with db.session_scope(readonly=True) as session:
        cards = [
            PackageCard(
                name=p.name,
                description=p.description,
                price=money(p.unit_price_minor, p.currency),
                credits=package_credits_text(p.credits_micros),
                bonus=package_credits_text(p.bonus_micros),
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
                credits=package_credits_text(o.credits_micros + o.bonus_micros),
                gross=money(o.gross_minor, o.currency),
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
                gross=money(i.gross_minor, i.currency),
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


def quote_text(customer_id: str, package_name: str, quantity: int) -> QuoteText:
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
        net=money(q.net_minor, q.currency),
        tax=money(q.tax_minor, q.currency),
        gross=money(q.gross_minor, q.currency),
        tax_label=label,
        wording=q.wording,
        credits=package_credits_text(q.credits_micros + q.bonus_micros),
    )


def order_status(customer_id: str, order_id: str) -> tuple[str, str]:
    with db.session_scope(readonly=True) as session:
        order = orders.get_order(session, order_id, customer_id=customer_id)
        balance = customer_balance(session, customer_id)
        return order.status, credits_text(balance.available_micros)
