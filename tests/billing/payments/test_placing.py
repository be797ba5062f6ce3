"""Placing an order, the one workflow behind the portal's buttons and `orders create`: the
checkout page comes with the order, a bank transfer gets its reference, terms acceptance and
contract amounts are recorded, and another customer's order is never opened."""

from __future__ import annotations

from dataclasses import replace

import pytest

from creditdash.billing.payments import placing
from creditdash.core import db
from creditdash.core.audit import CLI
from creditdash.core.errors import NotFound, ValidationFailed
from tests.billing.shop import Shop


def test_a_checkout_order_comes_with_its_payment_page(shop: Shop) -> None:
    placed = placing.place(
        customer_id=shop.customer_id, package_name="Growth", actor=CLI, accept_terms=True
    )
    assert placed.method == "checkout" and placed.checkout_url
    order = shop.get(placed.order_id)
    assert order.checkout_url == placed.checkout_url
    assert order.terms_accepted_at is not None and order.customer_id == shop.customer_id


def test_a_bank_transfer_gets_a_reference_and_no_page(shop: Shop) -> None:
    placed = placing.place(
        customer_id=shop.customer_id, package_name="Growth", actor=CLI, manual=True
    )
    assert placed.method == "manual" and placed.checkout_url is None
    assert placed.transfer_reference == shop.get(placed.order_id).transfer_reference
    assert shop.get(placed.order_id).terms_accepted_at is None
    assert placed.gross_minor == shop.get(placed.order_id).gross_minor


def test_contract_amounts_in_the_callers_transaction(shop: Shop) -> None:
    with db.session_scope() as session:
        placed = placing.place_order(
            session,
            customer_id=shop.customer_id,
            package_name="Custom",
            actor=CLI,
            contract_net_minor=123_45,
            contract_credits_micros=50_000_000,
        )
    order = shop.get(placed.order_id)
    assert placed.method == "manual"  # Custom is always a bank transfer
    assert (order.net_minor, order.credits_micros) == (123_45, 50_000_000)
    assert placing.open_payment(placed) == placed


def test_contract_amounts_only_for_custom_and_unknown_packages_refused(shop: Shop) -> None:
    with pytest.raises(ValidationFailed, match="only for the Custom package"):
        placing.place(
            customer_id=shop.customer_id,
            package_name="Growth",
            actor=CLI,
            contract_net_minor=100,
        )
    with pytest.raises(NotFound):
        placing.place(customer_id=shop.customer_id, package_name="Platinum", actor=CLI)


def test_the_payment_page_is_opened_for_the_orders_own_customer(shop: Shop) -> None:
    with db.session_scope() as session:
        placed = placing.place_order(
            session, customer_id=shop.customer_id, package_name="Growth", actor=CLI
        )
    forged = replace(placed, customer_id="cus_someone_else")
    with pytest.raises(NotFound):
        placing.open_payment(forged)
    assert shop.get(placed.order_id).checkout_url is None
