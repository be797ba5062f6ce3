"""Stripe through the real `stripe` library, pointed at a fake Stripe API on loopback."""

from __future__ import annotations

import pytest

from creditdash.billing.payments import refunds
from creditdash.billing.payments.providers import ProviderFailed
from creditdash.core.audit import CLI
from creditdash.core.errors import ValidationFailed
from tests.billing.shop import Shop, charge_refunded_event, session_event


def test_checkout_session_is_created_through_the_library(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = shop.order("Growth", quantity=2)
    assert order.provider == "stripe"
    [call] = shop.stripe.calls
    assert call.path == "/v1/checkout/sessions"
    assert call.idempotency_key == f"checkout:{order.id}"
    params = call.params
    assert params["mode"] == "payment"
    assert params["metadata"]["order_id"] == order.id
    assert params["payment_intent_data"]["metadata"]["order_id"] == order.id
    line = params["line_items"]["0"]
    assert line["price_data"]["unit_amount"] == "10000" and line["price_data"]["currency"] == "eur"
    assert params["success_url"].endswith(f"/billing?checkout=success&order={order.id}")
    assert params["cancel_url"].endswith(f"/billing?checkout=cancelled&order={order.id}")
    assert order.checkout_session_id in shop.stripe.sessions
    assert order.checkout_url and order.checkout_url.startswith("https://checkout.invalid/")


def test_stripe_refund_calls_the_api_once_per_refund_id(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = shop.order()
    shop.post_event(session_event(order, payment_intent="pi_paid"), provider="stripe")
    assert shop.available() == 55_000_000
    done = refunds.refund_order(
        order.id, amount_minor=1000, refund_id="rf-1", actor=CLI, reason="asked nicely"
    )
    assert done.status == "succeeded" and done.provider_refund_id in shop.stripe.refunds
    again = refunds.refund_order(
        order.id, amount_minor=1000, refund_id="rf-1", actor=CLI, reason="asked nicely"
    )
    assert again.status == "succeeded" and again.provider_refund_id == done.provider_refund_id
    refund_calls = [c for c in shop.stripe.calls if c.path == "/v1/refunds"]
    assert len(refund_calls) == 1
    assert refund_calls[0].params["payment_intent"] == "pi_paid"
    assert refund_calls[0].params["amount"] == "1000"
    assert refund_calls[0].idempotency_key == "refund:rf-1"
    # 10.00 of 50.00 EUR returns a fifth of the 55 credits the order granted.
    assert shop.available() == 44_000_000
    # Stripe then reports the same refund; it is already applied.
    echoed = shop.post_event(
        charge_refunded_event(event_id="evt_r1", payment_intent="pi_paid", amount_refunded=1000),
        provider="stripe",
    )
    assert echoed.json()["outcome"] == "already_applied"
    assert shop.available() == 44_000_000
    assert shop.get(order.id).status == "partially_refunded"
    shop.verify_ledger()


def test_refused_stripe_refund_is_undone(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = shop.order()
    shop.post_event(session_event(order, payment_intent="pi_paid"), provider="stripe")
    shop.stripe.refuse_refunds = True
    with pytest.raises(ProviderFailed, match="cannot be refunded"):
        refunds.refund_order(
            order.id, amount_minor=5000, refund_id="rf-no", actor=CLI, reason="try"
        )
    restored = shop.get(order.id)
    assert restored.status == "paid" and restored.refunded_minor == 0
    assert shop.available() == 55_000_000
    # The failed refund id stays failed: a repeat does not call Stripe again.
    calls = len(shop.stripe.calls)
    failed = refunds.refund_order(
        order.id, amount_minor=5000, refund_id="rf-no", actor=CLI, reason="try"
    )
    assert failed.status == "failed" and len(shop.stripe.calls) == calls
    shop.verify_ledger()


def test_refund_made_in_the_stripe_dashboard_is_applied(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = shop.order()
    shop.post_event(session_event(order, payment_intent="pi_paid"), provider="stripe")
    answer = shop.post_event(
        charge_refunded_event(
            event_id="evt_dash", payment_intent="pi_paid", amount_refunded=order.gross_minor
        ),
        provider="stripe",
    )
    assert answer.json()["outcome"] == "refunded"
    assert shop.get(order.id).status == "refunded"
    assert shop.available() == 0
    with pytest.raises(ValidationFailed, match=r"at most 0.00 EUR"):
        refunds.refund_order(order.id, amount_minor=1, refund_id="rf-x", actor=CLI, reason="x")
    shop.verify_ledger()


def test_stripe_webhook_without_configured_secret_is_refused(shop: Shop) -> None:
    order = shop.order()
    answer = shop.post_event(session_event(order), provider="stripe")
    assert answer.status_code == 400
    assert shop.event_count() == 0
