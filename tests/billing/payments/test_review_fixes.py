"""Money paths a review found open, each shown closed: unclear provider answers, concurrent
refunds and refund events, the unused-credit policy, header parsing, maker-checker, the
sandbox outside development, bounds, oversized bodies and late bank transfers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
import stripe
from click.testing import CliRunner

from creditdash.billing import adjustments
from creditdash.billing.payments import checkout, manual, orders, packages, refunds, webhooks
from creditdash.billing.payments.models import PaymentOrder, Refund
from creditdash.billing.payments.providers import ProviderFailed
from creditdash.cli import main
from creditdash.core import db, settings
from creditdash.core.audit import CLI
from creditdash.core.errors import Forbidden, ValidationFailed
from creditdash.core.timeutil import utcnow
from tests.billing.shop import (
    SANDBOX_SECRET,
    Shop,
    charge_refunded_event,
    session_event,
)


def _paid(
    shop: Shop, package: str = "Growth", intent: str = "pi_1", provider: str = "sandbox"
) -> PaymentOrder:
    order = shop.order(package)
    answer = shop.post_event(session_event(order, payment_intent=intent), provider=provider)
    assert answer.json()["outcome"] == "credited"
    return shop.get(order.id)


def _together(*work: Callable[[], object]) -> list[object]:
    """Run the callables released together by a barrier; their results or exceptions."""
    barrier = threading.Barrier(len(work))
    results: list[object] = [None] * len(work)

    def run(index: int, fn: Callable[[], object]) -> None:
        barrier.wait()
        try:
            results[index] = fn()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _grant(shop: Shop, micros: int, key: str) -> None:
    with db.session_scope() as session:
        adjustments.grant_credits(
            session,
            customer_id=shop.customer_id,
            amount_micros=micros,
            reason="promo",
            actor=CLI,
            idempotency_key=key,
        )


def _spend(shop: Shop, micros: int, key: str) -> None:
    with db.session_scope() as session:
        adjustments.debit_credits(
            session,
            customer_id=shop.customer_id,
            amount_micros=micros,
            reason="usage",
            actor=CLI,
            idempotency_key=key,
        )


def test_unclear_stripe_answer_keeps_the_refund_pending(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = _paid(shop, intent="pi_unclear", provider="stripe")
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
    order = _paid(shop, intent="pi_late", provider="stripe")
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
    order = _paid(shop, intent="pi_cc")
    first = charge_refunded_event(event_id="evt_a", payment_intent="pi_cc", amount_refunded=1000)
    second = charge_refunded_event(event_id="evt_b", payment_intent="pi_cc", amount_refunded=2000)
    results = _together(lambda: shop.post_event(first), lambda: shop.post_event(second))
    assert [r.status_code for r in results] == [200, 200]  # type: ignore[attr-defined]
    assert shop.get(order.id).refunded_minor == 2000
    assert shop.available() == 55_000_000 - 22_000_000
    shop.verify_ledger()


def test_concurrent_refunds_stay_within_the_policy(shop: Shop) -> None:
    order = _paid(shop)
    _spend(shop, 40_000_000, "spend-1")
    results = _together(
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
    order = _paid(shop)
    _spend(shop, 55_000_000, "spend-all")
    _grant(shop, 100_000_000, "promo-after")
    with db.session_scope(readonly=True) as session:
        assert refunds.refund_limit(session, shop.get(order.id)).max_minor == 0


def test_credits_are_used_oldest_first(shop: Shop) -> None:
    _grant(shop, 100_000_000, "promo-before")
    order = _paid(shop)
    _spend(shop, 55_000_000, "spend-promo")  # the older promo credits go first
    with db.session_scope(readonly=True) as session:
        assert refunds.refund_limit(session, shop.get(order.id)).max_minor == order.gross_minor


@pytest.mark.parametrize(
    "shape",
    [" t={now},t={old},v1={sig}", "t={old},t={now},v1={sig}", "t={now}, v1={sig}", "v1={sig}"],
    ids=["leading-space", "two-timestamps", "space-after-comma", "no-timestamp"],
)
def test_loose_signature_headers_are_refused(shop: Shop, shape: str) -> None:
    order = shop.order()
    body = json.dumps(session_event(order))
    old = int(time.time()) - 3600
    sig = stripe.WebhookSignature.generate_signature_header(body, SANDBOX_SECRET, old).split("v1=")[
        1
    ]
    header = shape.format(now=int(time.time()), old=old, sig=sig)
    with pytest.raises(webhooks.SignatureRejected):
        webhooks.verify_event(body.encode(), header, [SANDBOX_SECRET])
    if header == header.strip():  # what an HTTP client can send at all
        assert shop.post_event(body, header=header).status_code == 400
    assert shop.event_count() == 0 and shop.available() == 0


def test_non_ascii_signature_is_a_400(shop: Shop) -> None:
    order = shop.order()
    header = f"t={int(time.time())},v1=abcé".encode()
    answer = httpx.post(
        f"{shop.base_url}/webhooks/sandbox",
        content=json.dumps(session_event(order)).encode(),
        headers={"stripe-signature": header},
    )
    assert answer.status_code == 400 and shop.event_count() == 0


def test_oversized_event_body_is_refused_unread(shop: Shop) -> None:
    answer = httpx.post(
        f"{shop.base_url}/webhooks/sandbox",
        content=b"{" + b" " * (600 * 1024) + b"}",
        headers={"stripe-signature": "t=1,v1=00"},
    )
    assert answer.status_code == 413 and shop.event_count() == 0


def test_anonymous_maker_cannot_be_checked(shop: Shop) -> None:
    order = shop.order("Custom")  # opened by the command line, no named admin
    with db.session_scope() as session, pytest.raises(Forbidden, match="named maker"):
        manual.approve(session, order_id=order.id, actor=shop.checker, payment_reference="X")
    assert shop.available() == 0


def test_late_bank_transfer_still_settles(shop: Shop) -> None:
    order = shop.order("Custom", actor=shop.maker)
    with db.session_scope() as session:
        orders.expire_stale_orders(session, now=utcnow() + timedelta(days=40))
    assert shop.get(order.id).status == "expired"
    with db.session_scope() as session:
        manual.approve(session, order_id=order.id, actor=shop.checker, payment_reference="LATE")
    assert shop.get(order.id).status == "paid" and shop.available() == 1_000_000_000


def test_orders_too_large_to_settle_are_refused(shop: Shop) -> None:
    with pytest.raises(ValidationFailed, match="more credits than one order may"):
        shop.order("Custom", actor=shop.maker, contract_credits_micros=10**15)
    with pytest.raises(ValidationFailed, match="too large for one payment"):
        shop.order("Custom", actor=shop.maker, contract_net_minor=10**11)


def test_sandbox_pay_ignores_the_host_header(shop: Shop) -> None:
    order = shop.order("Starter")
    pay = f"{shop.base_url}/sandbox/checkout/{order.checkout_session_id}/pay"
    answer = httpx.post(pay, data={"accept_terms": "yes"}, headers={"host": "attacker.invalid:9"})
    assert answer.status_code == 303
    assert shop.get(order.id).status == "paid"


def test_sandbox_is_off_outside_development(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    order = shop.order("Starter")  # opened while the sandbox was on
    monkeypatch.setenv("CREDITDASH_ENVIRONMENT", "production")
    monkeypatch.setenv("CREDITDASH_SECRET_KEY", "x" * 40)
    settings.reset_settings()
    with pytest.raises(ProviderFailed, match="sandbox payment provider is off"):
        shop.order("Starter")
    assert httpx.get(order.checkout_url or "").status_code == 404
    pay = f"{shop.base_url}/sandbox/checkout/{order.checkout_session_id}/pay"
    assert httpx.post(pay, data={"accept_terms": "yes"}).status_code == 404
    assert shop.post_event(session_event(order)).status_code == 400
    assert shop.available() == 0
    monkeypatch.setenv("CREDITDASH_SANDBOX_PAYMENTS", "true")
    settings.reset_settings()
    assert shop.post_event(session_event(order)).json()["outcome"] == "credited"


def test_cli_refund_needs_an_id_and_reports_failure(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = _paid(shop, intent="pi_cli", provider="stripe")
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


def test_history_records_the_real_previous_status(shop: Shop) -> None:
    order = shop.order()
    with db.session_scope() as session:
        orders.expire_stale_orders(session, now=utcnow() + timedelta(days=2))
    stale_copy = order  # still says awaiting_payment in memory
    assert stale_copy.status == "awaiting_payment"
    shop.post_event(session_event(order))
    with db.session_scope(readonly=True) as session:
        steps = [(h.from_status, h.to_status) for h in orders.order_history(session, order.id)]
    assert steps[-1] == ("expired", "paid")


def test_checkout_is_not_reopened_for_closed_orders(shop: Shop) -> None:
    from creditdash.core.errors import Conflict

    order = shop.order()
    with db.session_scope() as session:
        orders.cancel_order(session, orders.get_order(session, order.id), actor=CLI, reason="x")
    with pytest.raises(Conflict, match="can no longer be paid"):
        checkout.open_checkout(order.id)


def test_unused_refund_ids(shop: Shop) -> None:
    # A pending refund left by a crash is finished by running the same id again.
    order = _paid(shop)
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
