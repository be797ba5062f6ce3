"""Refunds under pressure: unclear or late answers from Stripe, concurrent refunds and refund
events, the unused-credit policy (oldest credits used first, later free credits never paid out),
refund ids, and the CLI's refund command."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from creditdash.billing.payments import orders, packages, refunds
from creditdash.billing.payments.models import Refund
from creditdash.billing.payments.providers import ProviderFailed
from creditdash.cli import main
from creditdash.core import db
from creditdash.core.audit import CLI
from creditdash.core.errors import ValidationFailed
from tests.billing.payments.helpers import grant, paid, spend, together
from tests.billing.shop import (
    Shop,
    charge_refunded_event,
)


def test_unclear_stripe_answer_keeps_the_refund_pending(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = paid(shop, intent="pi_unclear", provider="stripe")
    shop.stripe.refund_then_fail_with = 500  # Stripe refunded, but the answer was an error
    with pytest.raises(ProviderFailed, match="stays pending"):
        refunds.refund_order(order.id, amount_minor=1000, refund_id="rf-u", actor=CLI, reason="x")
    pending = shop.get(order.id)
    assert pending.refunded_minor == 1000 and shop.available() == 44_000_000
    # Stripe's event about the refund that did happen is already accounted for.
    echoed = shop.post_event(
        charge_refunded_event(event_id="evt_u", payment_intent="pi_unclear", amount_refunded=1000),
        provider="stripe",
    )
    assert echoed.json()["outcome"] == "already_applied"
    shop.stripe.refund_then_fail_with = None
    done = refunds.refund_order(
        order.id, amount_minor=1000, refund_id="rf-u", actor=CLI, reason="x"
    )
    assert done.status == "succeeded"
    assert shop.get(order.id).refunded_minor == 1000 and shop.available() == 44_000_000
    shop.verify_ledger()


def test_refund_failing_later_at_stripe_is_undone(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = paid(shop, intent="pi_late", provider="stripe")
    done = refunds.refund_order(
        order.id, amount_minor=2000, refund_id="rf-l", actor=CLI, reason="x"
    )
    assert shop.available() == 33_000_000
    failed = {
        "id": "evt_refund_failed",
        "type": "refund.failed",
        "data": {
            "object": {
                "id": done.provider_refund_id,
                "object": "refund",
                "status": "failed",
                "metadata": {"refund_id": "rf-l", "order_id": order.id},
            }
        },
    }
    answer = shop.post_event(failed, provider="stripe")
    assert answer.json()["outcome"] == "refund_failed"
    assert shop.available() == 55_000_000
    restored = shop.get(order.id)
    assert restored.status == "paid" and restored.refunded_minor == 0
    shop.verify_ledger()


def test_concurrent_refund_events_count_money_once(shop: Shop) -> None:
    order = paid(shop, intent="pi_cc")
    first = charge_refunded_event(event_id="evt_a", payment_intent="pi_cc", amount_refunded=1000)
    second = charge_refunded_event(event_id="evt_b", payment_intent="pi_cc", amount_refunded=2000)
    results = together(lambda: shop.post_event(first), lambda: shop.post_event(second))
    assert [r.status_code for r in results] == [200, 200]  # type: ignore[attr-defined]
    assert shop.get(order.id).refunded_minor == 2000
    assert shop.available() == 55_000_000 - 22_000_000
    shop.verify_ledger()


def test_concurrent_refunds_stay_within_the_policy(shop: Shop) -> None:
    order = paid(shop)
    spend(shop, 40_000_000, "spend-1")
    results = together(
        lambda: refunds.refund_order(
            order.id, amount_minor=1363, refund_id="rf-p1", actor=CLI, reason="x"
        ),
        lambda: refunds.refund_order(
            order.id, amount_minor=1363, refund_id="rf-p2", actor=CLI, reason="x"
        ),
    )
    refused = [r for r in results if isinstance(r, ValidationFailed)]
    assert len(refused) == 1, results
    assert shop.get(order.id).refunded_minor == 1363
    shop.verify_ledger()


def test_free_credits_granted_after_the_order_are_not_refundable_as_cash(shop: Shop) -> None:
    order = paid(shop)
    spend(shop, 55_000_000, "spend-all")
    grant(shop, 100_000_000, "promo-after")
    with db.session_scope(readonly=True) as session:
        assert refunds.refund_limit(session, shop.get(order.id)).max_minor == 0


def test_credits_are_used_oldest_first(shop: Shop) -> None:
    grant(shop, 100_000_000, "promo-before")
    order = paid(shop)
    spend(shop, 55_000_000, "spend-promo")  # the older promo credits go first
    with db.session_scope(readonly=True) as session:
        assert refunds.refund_limit(session, shop.get(order.id)).max_minor == order.gross_minor


def test_unused_refund_ids(shop: Shop) -> None:
    # A pending refund left by a crash is finished by running the same id again.
    order = paid(shop)
    with db.session_scope() as session:
        stored = orders.get_order(session, order.id)
        refunds.apply_refund(
            session,
            stored,
            refund_id="rf-crash",
            amount_minor=500,
            actor=CLI,
            reason="x",
            status="pending",
        )
    done = refunds.refund_order(
        order.id, amount_minor=500, refund_id="rf-crash", actor=CLI, reason="x"
    )
    assert done.status == "succeeded"
    with db.session_scope(readonly=True) as session:
        assert session.get(Refund, "rf-crash") is not None
    assert packages  # the module stays imported for fixtures
    shop.verify_ledger()


def test_cli_refund_needs_an_id_and_reports_failure(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = paid(shop, intent="pi_cli", provider="stripe")
    admin = shop.checker.label.removeprefix("user:")
    args = ["orders", "refund", order.id, "--amount", "5.00", "--reason", "r", "--admin", admin]
    missing = CliRunner().invoke(main, args)
    assert missing.exit_code == 2 and "--refund-id" in missing.output
    shop.stripe.refuse_refunds = True
    refused = CliRunner().invoke(main, [*args, "--refund-id", "cli-1"])
    assert refused.exit_code == 1 and "cannot be refunded" in refused.output
    again = CliRunner().invoke(main, [*args, "--refund-id", "cli-1"])
    assert again.exit_code == 1 and "failed" in again.output
    assert shop.available() == 55_000_000
