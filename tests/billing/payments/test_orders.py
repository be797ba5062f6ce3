"""Payment orders: amounts fixed up front, bounds, expiry, tenancy and the CONTRACT.md shape."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from creditdash.billing.payments import orders, packages
from creditdash.billing.payments.packages import PackageSpec
from creditdash.cli import main
from creditdash.core import db
from creditdash.core.audit import CLI
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.timeutil import utcnow
from tests.billing.shop import Shop, session_event
from tests.factories import funded_customer

CONTRACT_KEYS = {
    "order_id",
    "status",
    "package",
    "quantity",
    "credits",
    "net",
    "tax",
    "gross",
    "currency",
    "tax_scheme",
    "checkout_session_id",
    "checkout_url",
}


def test_order_amounts_are_fixed_before_payment(shop: Shop) -> None:
    order = shop.order("Enterprise", quantity=2)
    shape = orders.describe_order(order)
    assert set(shape) >= CONTRACT_KEYS
    assert shape["status"] == "awaiting_payment"
    assert (shape["net"], shape["tax"], shape["gross"], shape["currency"]) == (
        "500.00",
        "0.00",
        "500.00",
        "EUR",
    )
    assert shape["credits"] == "575.000000" and shape["tax_scheme"] == "out_of_scope"
    assert shape["terms_version"] == "2026-11-01"


@pytest.mark.parametrize("quantity", [0, 21, -1])
def test_quantity_outside_the_bounds_is_refused(shop: Shop, quantity: int) -> None:
    with pytest.raises(ValidationFailed, match="between 1 and 20"):
        shop.order("Growth", quantity=quantity)


def test_packages_off_sale_cannot_be_ordered(shop: Shop) -> None:
    with db.session_scope() as session:
        spec = PackageSpec(
            name="Starter",
            currency="EUR",
            unit_price_minor=1000,
            credits_micros=10_000_000,
            max_quantity=10,
            active=False,
        )
        packages.save_package(session, spec=spec, actor=CLI)
    with pytest.raises(ValidationFailed, match="not on sale"):
        shop.order("Starter")


def test_bad_package_definitions_are_refused(shop: Shop) -> None:
    bad = [
        PackageSpec(name="", currency="EUR", unit_price_minor=1, credits_micros=1),
        PackageSpec(name="X", currency="XXX", unit_price_minor=1, credits_micros=1),
        PackageSpec(name="X", currency="EUR", unit_price_minor=0, credits_micros=1),
        PackageSpec(name="X", currency="EUR", unit_price_minor=1, credits_micros=1, max_quantity=0),
    ]
    for spec in bad:
        with db.session_scope() as session, pytest.raises(ValidationFailed):
            packages.save_package(session, spec=spec, actor=CLI)


def test_another_customers_order_is_not_found(shop: Shop) -> None:
    order = shop.order()
    other = funded_customer(shop.engine, credits_micros=0, name="Other")
    with db.session_scope(readonly=True) as session:
        with pytest.raises(NotFound):
            orders.get_order(session, order.id, customer_id=other.customer_id)
        assert orders.list_orders(session, customer_id=other.customer_id) == []
        assert orders.get_order(session, order.id, customer_id=shop.customer_id).id == order.id


def test_stale_orders_expire_and_a_late_payment_still_settles(shop: Shop) -> None:
    order = shop.order()
    with db.session_scope() as session:
        assert orders.expire_stale_orders(session, now=utcnow() + timedelta(days=2)) >= 1
    assert shop.get(order.id).status == "expired"
    assert shop.post_event(session_event(order)).json()["outcome"] == "credited"
    assert shop.get(order.id).status == "paid"


def test_cancelled_order_refuses_a_second_cancel(shop: Shop) -> None:
    from creditdash.core.errors import Conflict

    order = shop.order()
    with db.session_scope() as session:
        orders.cancel_order(session, orders.get_order(session, order.id), actor=CLI, reason="no")
    with db.session_scope() as session, pytest.raises(Conflict):
        orders.cancel_order(session, orders.get_order(session, order.id), actor=CLI, reason="no")


def test_cli_orders_create_and_show(shop: Shop) -> None:
    created = CliRunner().invoke(
        main,
        [
            "orders",
            "create",
            "--customer",
            shop.customer_id,
            "--package",
            "starter",
            "--quantity",
            "2",
            "--json",
        ],
    )
    assert created.exit_code == 0, created.output
    shape = json.loads(created.output)
    assert set(shape) >= CONTRACT_KEYS
    assert shape["gross"] == "20.00" and shape["checkout_url"].startswith(shop.base_url)
    shown = CliRunner().invoke(main, ["orders", "show", shape["order_id"], "--json"])
    assert json.loads(shown.output) == shape
    missing = CliRunner().invoke(main, ["orders", "show", "ord_nope", "--json"])
    assert missing.exit_code == 1 and "no order" in missing.output
    refused = CliRunner().invoke(
        main, ["orders", "create", "--customer", shop.customer_id, "--package", "Platinum"]
    )
    assert refused.exit_code == 1 and "no credit package named 'Platinum'" in refused.output


def test_verify_reports_an_order_marked_paid_without_its_credit(shop: Shop) -> None:
    from sqlalchemy import update

    from creditdash.billing.payments.models import PaymentOrder
    from creditdash.billing.payments.verify import verify_payments

    order = shop.order()
    with db.session_scope() as session:
        session.execute(
            update(PaymentOrder).where(PaymentOrder.id == order.id).values(status="paid")  # type: ignore[arg-type]
        )
    with db.session_scope(readonly=True) as session:
        credit, invoice = verify_payments(session)
    assert order.id in credit and "top-up moved 0+0" in credit
    assert order.id in invoice and "has 0 invoices, not 1" in invoice
    broken = CliRunner().invoke(main, ["ledger", "verify"])
    assert broken.exit_code == 1 and order.id in broken.output


def test_cli_packages_set_and_list(shop: Shop) -> None:
    made = CliRunner().invoke(
        main,
        [
            "packages",
            "set",
            "Pro",
            "--price",
            "19.90",
            "--credits",
            "20",
            "--bonus",
            "1.5",
            "--max-quantity",
            "5",
        ],
    )
    assert made.exit_code == 0, made.output
    listed = json.loads(CliRunner().invoke(main, ["packages", "list", "--json"]).output)
    pro = next(p for p in listed if p["name"] == "Pro")
    assert (pro["unit_price"], pro["credits"], pro["bonus_credits"]) == (
        "19.90",
        "20.000000",
        "1.500000",
    )
    bad = CliRunner().invoke(
        main, ["packages", "set", "Pro", "--price", "19.999", "--credits", "20"]
    )
    assert bad.exit_code == 1 and "more than 2 decimal places" in bad.output
