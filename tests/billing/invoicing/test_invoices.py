"""Invoices: issued with the payment, gapless numbers under concurrency, frozen snapshots,
credit notes for refunds, immutable rows."""

from __future__ import annotations

import json
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from creditdash.billing.invoicing import invoices, profiles
from creditdash.billing.invoicing.models import Invoice, TaxRate
from creditdash.billing.payments import refunds
from creditdash.billing.payments.models import PaymentOrder
from creditdash.core import db
from creditdash.core.audit import CLI
from creditdash.core.errors import ValidationFailed
from creditdash.core.timeutil import utcnow
from tests.billing.shop import Shop, session_event


def _profile(shop: Shop, **kw: object) -> None:
    data = profiles.ProfileInput(**{"legal_name": "Müller GmbH", "country": "DE", **kw})  # type: ignore[arg-type]
    with db.session_scope() as session:
        profiles.save_billing_profile(session, customer_id=shop.customer_id, data=data, actor=CLI)


def _pay(shop: Shop, package: str = "Growth", quantity: int = 1) -> PaymentOrder:
    order = shop.order(package, quantity)
    assert shop.post_event(session_event(order)).json()["outcome"] == "credited"
    return shop.get(order.id)


def _invoices(customer_id: str | None = None) -> list[Invoice]:
    with db.session_scope(readonly=True) as session:
        found = invoices.list_invoices(session, customer_id=customer_id)
        for invoice in found:
            session.expunge(invoice)
        return found


def test_paying_an_order_issues_its_invoice(shop: Shop) -> None:
    _profile(shop)  # a German consumer of a German seller: 19% VAT
    order = _pay(shop, "Growth", 2)
    assert (order.net_minor, order.tax_minor, order.gross_minor) == (10_000, 1_900, 11_900)
    [invoice] = _invoices(shop.customer_id)
    year = utcnow().year
    assert invoice.number == f"CD-{year}-000001" and invoice.kind == "invoice"
    assert (invoice.net_minor, invoice.tax_minor, invoice.gross_minor) == (10_000, 1_900, 11_900)
    assert invoice.tax_scheme == "standard" and invoice.order_id == order.id
    with db.session_scope(readonly=True) as session:
        issued = invoices.get_by_number(session, invoice.number)
    assert [(ln.quantity, ln.unit_minor, ln.net_minor) for ln in issued.lines] == [
        (2, 5000, 10_000)
    ]
    [tax] = issued.tax_lines
    assert (tax.jurisdiction, tax.rate_bp, tax.taxable_minor, tax.amount_minor) == (
        "DE",
        1900,
        10_000,
        1_900,
    )
    assert json.loads(invoice.seller_json)["legal_name"] == "Creditdash Demo GmbH"
    assert json.loads(invoice.buyer_json)["legal_name"] == "Müller GmbH"
    # The customer paid the gross; credits are what the package grants, tax or not.
    assert shop.available() == 110_000_000


def test_reverse_charge_invoice_carries_the_wording(shop: Shop) -> None:
    _profile(shop, country="FR", is_business=True, tax_id="FR40303265045")
    order = _pay(shop)
    assert order.tax_minor == 0 and order.tax_scheme == "reverse_charge"
    with db.session_scope(readonly=True) as session:
        [invoice] = invoices.list_invoices(session, customer_id=shop.customer_id)
        [tax] = invoices.load(session, invoice).tax_lines
    assert "Article 196" in tax.wording and json.loads(invoice.tax_json)["buyer_tax_id"]


def test_manual_settlement_issues_an_invoice_too(shop: Shop) -> None:
    from creditdash.billing.payments import manual

    order = shop.order("Custom", actor=shop.maker)
    with db.session_scope() as session:
        manual.approve(session, order_id=order.id, actor=shop.checker, payment_reference="B-1")
    [invoice] = _invoices(shop.customer_id)
    assert invoice.order_id == order.id and invoice.payment_reference == "B-1"


def test_snapshots_do_not_follow_later_edits_or_rates(shop: Shop) -> None:
    _profile(shop)
    paid = _pay(shop)
    [before] = _invoices(shop.customer_id)
    _profile(shop, legal_name="Renamed AG")
    with db.session_scope() as session:
        session.add(
            TaxRate(jurisdiction="DE", tax_name="VAT", rate_bp=2100, valid_from=utcnow().date())
        )
    [after] = _invoices(shop.customer_id)
    assert (after.buyer_json, after.tax_json, after.tax_minor) == (
        before.buyer_json,
        before.tax_json,
        before.tax_minor,
    )
    assert json.loads(after.buyer_json)["legal_name"] == "Müller GmbH"
    assert paid.tax_minor == 950
    assert shop.order("Growth").tax_minor == 1050  # new orders use the new rate


def test_issued_invoices_cannot_be_changed_or_deleted(shop: Shop) -> None:
    _pay(shop)
    [invoice] = _invoices()
    for statement in (
        "UPDATE invoices SET gross_minor = 1 WHERE id = :id",
        "DELETE FROM invoices WHERE id = :id",
        "UPDATE invoice_lines SET net_minor = 1 WHERE invoice_id = :id",
        "DELETE FROM invoice_tax_lines WHERE invoice_id = :id",
    ):
        with pytest.raises(DatabaseError, match="immutable"), db.session_scope() as session:
            session.execute(text(statement), {"id": invoice.id})
    assert _invoices()[0].gross_minor == invoice.gross_minor


def test_concurrent_payments_get_gapless_numbers(shop: Shop) -> None:
    count = 12
    placed = [shop.order("Starter") for _ in range(count)]
    barrier = threading.Barrier(count)
    answers: list[int] = []

    def pay(order: PaymentOrder) -> None:
        barrier.wait()
        answers.append(shop.post_event(session_event(order, payment_intent=order.id)).status_code)

    threads = [threading.Thread(target=pay, args=(order,)) for order in placed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * count
    year = utcnow().year
    numbers = sorted(i.number for i in _invoices())
    assert numbers == [f"CD-{year}-{n:06d}" for n in range(1, count + 1)]
    assert len({i.order_id for i in _invoices()}) == count


def test_refunds_issue_credit_notes_that_add_up(shop: Shop) -> None:
    _profile(shop)
    order = _pay(shop)  # 50.00 + 9.50 VAT
    refunds.refund_order(order.id, amount_minor=1000, refund_id="cn-1", actor=CLI, reason="x")
    refunds.refund_order(
        order.id, amount_minor=order.gross_minor - 1000, refund_id="cn-2", actor=CLI, reason="x"
    )
    found = _invoices(shop.customer_id)
    notes = [i for i in found if i.kind == "credit_note"]
    [invoice] = [i for i in found if i.kind == "invoice"]
    assert len(notes) == 2
    assert all(n.number.startswith(f"CN-{utcnow().year}-") for n in notes)
    assert all(n.credits_invoice_id == invoice.id for n in notes)
    assert sum(n.gross_minor for n in notes) == invoice.gross_minor
    assert sum(n.tax_minor for n in notes) == invoice.tax_minor
    assert sum(n.net_minor for n in notes) == invoice.net_minor
    # Running a refund id again issues nothing more.
    refunds.refund_order(order.id, amount_minor=1000, refund_id="cn-1", actor=CLI, reason="x")
    assert len([i for i in _invoices() if i.kind == "credit_note"]) == 2


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    unit_minor=st.integers(min_value=1, max_value=10**6),
    quantity=st.integers(min_value=1, max_value=50),
    rate_bp=st.integers(min_value=0, max_value=10_000),
)
def test_invoice_totals_are_exact(shop: Shop, unit_minor: int, quantity: int, rate_bp: int) -> None:
    from decimal import ROUND_HALF_EVEN, Decimal

    from creditdash.billing.payments.packages import PackageSpec, save_package

    today = utcnow().date()
    with db.session_scope() as session:
        # A German consumer of the German demo seller, at a rate in force from today.
        profiles.save_billing_profile(
            session,
            customer_id=shop.customer_id,
            data=profiles.ProfileInput(legal_name="Prop GmbH", country="DE"),
            actor=CLI,
        )
        session.execute(
            text("DELETE FROM tax_rates WHERE jurisdiction = 'DE' AND valid_from = :d"),
            {"d": today},
        )
        session.add(TaxRate(jurisdiction="DE", tax_name="VAT", rate_bp=rate_bp, valid_from=today))
        save_package(
            session,
            spec=PackageSpec(
                name="Prop",
                currency="EUR",
                unit_price_minor=unit_minor,
                credits_micros=1_000_000,
                max_quantity=50,
            ),
            actor=CLI,
        )
    order = _pay(shop, "Prop", quantity)
    with db.session_scope(readonly=True) as session:
        invoice = next(i for i in invoices.list_invoices(session) if i.order_id == order.id)
        issued = invoices.load(session, invoice)
    net = unit_minor * quantity
    expected_tax = int(
        (Decimal(net) * rate_bp / 10_000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    )
    lines = sum(ln.net_minor for ln in issued.lines)
    taxes = sum(t.amount_minor for t in issued.tax_lines)
    assert (invoice.net_minor, invoice.tax_minor) == (net, expected_tax)
    assert invoice.gross_minor == lines + taxes == net + expected_tax == order.gross_minor
    assert [t.rate_bp for t in issued.tax_lines] == [rate_bp]


def test_credit_notes_never_exceed_the_invoice_after_a_failed_refund(stripe_shop: Shop) -> None:
    shop = stripe_shop
    _profile(shop)
    order = shop.order("Growth")
    shop.post_event(session_event(order, payment_intent="pi_cn"), provider="stripe")
    paid = shop.get(order.id)
    done = refunds.refund_order(
        paid.id, amount_minor=paid.gross_minor, refund_id="cn-all", actor=CLI, reason="x"
    )
    failed = {
        "id": "evt_cn_failed",
        "type": "refund.failed",
        "data": {
            "object": {
                "id": done.provider_refund_id,
                "status": "failed",
                "metadata": {"refund_id": "cn-all"},
            }
        },
    }
    assert shop.post_event(failed, provider="stripe").json()["outcome"] == "refund_failed"
    refunds.refund_order(
        paid.id, amount_minor=paid.gross_minor, refund_id="cn-again", actor=CLI, reason="x"
    )
    found = _invoices(shop.customer_id)
    [invoice] = [i for i in found if i.kind == "invoice"]
    live = [i for i in found if i.kind == "credit_note" and i.refund_id == "cn-again"]
    assert [(n.gross_minor, n.tax_minor) for n in live] == [
        (invoice.gross_minor, invoice.tax_minor)
    ]
    shop.verify_ledger()


def test_us_seller_sells_at_home_without_tax(shop: Shop) -> None:
    with db.session_scope() as session:
        profiles.save_seller(
            session,
            data=profiles.SellerInput(legal_name="Creditdash Inc.", country="US"),
            actor=CLI,
        )
        # A country with no rate on file cannot be a seller's home.
        with pytest.raises(ValidationFailed, match="no tax rate for CH"):
            profiles.save_seller(
                session,
                data=profiles.SellerInput(legal_name="Creditdash AG", country="CH"),
                actor=CLI,
            )
    _profile(shop, country="US", legal_name="Buyer LLC")
    order = shop.order("Starter")
    assert (order.tax_minor, order.tax_scheme) == (0, "out_of_scope")
