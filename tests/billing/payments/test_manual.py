"""Manual payment orders: bank transfer, maker-checker approval, exactly one credit."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from creditdash.billing.payments import manual, orders
from creditdash.core import db
from creditdash.core.audit import AuditEntry
from creditdash.core.errors import Conflict, Forbidden, ValidationFailed
from tests.billing.shop import Shop


def _approve(shop: Shop, order_id: str, actor: object, reference: str = "BANK-42") -> None:
    with db.session_scope() as session:
        manual.approve(session, order_id=order_id, actor=actor, payment_reference=reference)  # type: ignore[arg-type]


def test_custom_order_is_manual_with_a_transfer_reference(shop: Shop) -> None:
    order = shop.order("Custom", actor=shop.maker)
    assert order.method == "manual" and order.provider == "manual"
    assert order.transfer_reference and order.transfer_reference.startswith("CD-")
    assert order.checkout_url is None


def test_approval_credits_exactly_once(shop: Shop) -> None:
    order = shop.order("Custom", actor=shop.maker)
    _approve(shop, order.id, shop.checker)
    assert shop.available() == 1_000_000_000
    with pytest.raises(Conflict, match="is paid"):
        _approve(shop, order.id, shop.checker)
    assert shop.available() == 1_000_000_000
    paid = shop.get(order.id)
    assert paid.status == "paid" and paid.payment_reference == "BANK-42"
    assert paid.settled_by_user_id == shop.checker.user_id
    with db.session_scope(readonly=True) as session:
        actions = [
            (a.action, a.actor_label)
            for a in session.execute(
                select(AuditEntry).where(AuditEntry.target_id == order.id).order_by(AuditEntry.id)
            ).scalars()
        ]
        history = [(h.from_status, h.to_status) for h in orders.order_history(session, order.id)]
    assert actions == [("order.create", shop.maker.label), ("order.approve", shop.checker.label)]
    assert history == [(None, "awaiting_payment"), ("awaiting_payment", "paid")]
    shop.verify_ledger()


def test_the_maker_cannot_approve_their_own_order(shop: Shop) -> None:
    order = shop.order("Custom", actor=shop.maker)
    with pytest.raises(Forbidden, match="cannot also approve"):
        _approve(shop, order.id, shop.maker)
    assert shop.available() == 0
    assert shop.get(order.id).status == "awaiting_payment"


def test_approval_needs_a_named_admin_and_a_reference(shop: Shop) -> None:
    from creditdash.core.audit import CLI

    order = shop.order("Custom", actor=shop.maker)
    with pytest.raises(Forbidden, match="named admin"):
        _approve(shop, order.id, CLI)
    with pytest.raises(ValidationFailed, match="payment reference"):
        _approve(shop, order.id, shop.checker, reference="  ")
    assert shop.available() == 0


def test_checkout_orders_cannot_be_approved_by_hand(shop: Shop) -> None:
    order = shop.order("Growth")
    with pytest.raises(Conflict, match="provider's event"):
        _approve(shop, order.id, shop.checker)
    assert shop.available() == 0


def test_rejected_order_cannot_be_approved(shop: Shop) -> None:
    order = shop.order("Custom", actor=shop.maker)
    with db.session_scope() as session:
        manual.reject(session, order_id=order.id, actor=shop.checker, reason="never arrived")
    assert shop.get(order.id).status == "cancelled"
    with pytest.raises(Conflict, match="cancelled"):
        _approve(shop, order.id, shop.checker)
    assert shop.available() == 0


def test_contract_terms_only_for_custom(shop: Shop) -> None:
    order = shop.order(
        "Custom",
        actor=shop.maker,
        contract_net_minor=420_000,
        contract_credits_micros=5_000_000_000,
    )
    assert order.gross_minor == 420_000 and order.credits_micros == 5_000_000_000
    with pytest.raises(ValidationFailed, match="only for the Custom package"):
        shop.order("Growth", contract_net_minor=1)


def test_cli_approve_refuses_non_admins(shop: Shop) -> None:
    from click.testing import CliRunner

    from creditdash.cli import main

    order = shop.order("Custom", actor=shop.maker)
    refused = CliRunner().invoke(
        main, ["orders", "approve", order.id, "--admin", "nobody@example.com", "--reference", "X"]
    )
    assert refused.exit_code == 1 and "not an active platform admin" in refused.output
    ok = CliRunner().invoke(
        main,
        [
            "orders",
            "approve",
            order.id,
            "--admin",
            shop.checker.label[5:],
            "--reference",
            "X",
            "--json",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["status"] == "paid"
    assert shop.available() == 1_000_000_000
