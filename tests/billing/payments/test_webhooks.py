"""Signed payment webhooks: every case of RELIABILITY.md, over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
import stripe

from creditdash.billing.payments import webhooks
from tests.billing.shop import (
    OLD_STRIPE_SECRET,
    SANDBOX_SECRET,
    STRIPE_SECRET,
    Shop,
    charge_refunded_event,
    session_event,
)

GROWTH_MICROS = 55_000_000  # 50 credits + 5 bonus


def _refused_without_writing(shop: Shop, answer: httpx.Response, reason: str) -> None:
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["error"]
    assert shop.event_count() == 0
    assert shop.available() == 0


def test_missing_header_is_refused(shop: Shop) -> None:
    order = shop.order()
    answer = shop.post_event(session_event(order), header="")
    _refused_without_writing(shop, answer, "missing Stripe-Signature")


def test_bad_signature_is_refused(shop: Shop) -> None:
    order = shop.order()
    answer = shop.post_event(session_event(order), secret="whsec_not_the_right_one")
    _refused_without_writing(shop, answer, "no signature matches")


def test_body_changed_after_signing_is_refused(shop: Shop) -> None:
    order = shop.order()
    body = json.dumps(session_event(order))
    header = stripe.WebhookSignature.generate_signature_header(body, SANDBOX_SECRET)
    tampered = body.replace(f'"amount_total": {order.gross_minor}', '"amount_total": 1')
    assert tampered != body
    answer = shop.post_event(tampered, header=header)
    _refused_without_writing(shop, answer, "no signature matches")


def test_stale_and_future_timestamps_are_refused(shop: Shop) -> None:
    order = shop.order()
    event = session_event(order)
    stale = shop.post_event(event, timestamp=int(time.time()) - webhooks.TOLERANCE_S - 30)
    _refused_without_writing(shop, stale, "too old")
    future = shop.post_event(event, timestamp=int(time.time()) + webhooks.TOLERANCE_S + 30)
    _refused_without_writing(shop, future, "in the future")
    # Inside the tolerance either way is fine.
    assert shop.post_event(event, timestamp=int(time.time()) - 60).status_code == 200


def test_rotation_two_v1_signatures_any_match_is_accepted(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = shop.order()
    body = json.dumps(session_event(order))
    now = int(time.time())
    # While an endpoint secret rolls, the provider signs with both; one of them is ours.
    old = stripe.WebhookSignature.generate_signature_header(body, OLD_STRIPE_SECRET, now)
    new = stripe.WebhookSignature.generate_signature_header(body, STRIPE_SECRET, now)
    header = f"t={now},v1={old.split('v1=')[1]},v1={new.split('v1=')[1]}"
    answer = shop.post_event(body, provider="stripe", header=header)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "credited"
    assert shop.available() == GROWTH_MICROS


def test_rotation_two_configured_secrets(
    stripe_shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from creditdash.core import settings

    shop = stripe_shop
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"{STRIPE_SECRET},{OLD_STRIPE_SECRET}")
    settings.reset_settings()
    order = shop.order()
    answer = shop.post_event(session_event(order), provider="stripe", secret=OLD_STRIPE_SECRET)
    assert answer.status_code == 200 and answer.json()["outcome"] == "credited"


def test_sandbox_event_cannot_pay_a_stripe_order(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = shop.order()
    answer = shop.post_event(session_event(order), provider="sandbox")
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "unknown_order"
    assert shop.available() == 0
    assert shop.get(order.id).status == "awaiting_payment"


def test_completed_event_credits_once_and_duplicates_get_2xx(shop: Shop) -> None:
    order = shop.order()
    event = session_event(order)
    first = shop.post_event(event)
    assert first.status_code == 200 and first.json()["outcome"] == "credited"
    again = shop.post_event(event)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert shop.available() == GROWTH_MICROS
    paid = shop.get(order.id)
    assert paid.status == "paid" and paid.provider_payment_id == "pi_test_1"
    assert shop.event_count() == 1
    shop.verify_ledger()


def test_concurrent_duplicate_delivery_credits_once(shop: Shop) -> None:
    order = shop.order()
    body = json.dumps(session_event(order))
    header = stripe.WebhookSignature.generate_signature_header(body, SANDBOX_SECRET)
    barrier = threading.Barrier(8)
    answers: list[int] = []

    def deliver() -> None:
        barrier.wait()
        answers.append(shop.post_event(body, header=header).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 8
    assert shop.available() == GROWTH_MICROS
    assert shop.event_count() == 1
    shop.verify_ledger()


def test_two_event_types_for_one_payment_credit_once(shop: Shop) -> None:
    order = shop.order()
    completed = shop.post_event(session_event(order))
    succeeded = shop.post_event(session_event(order, "checkout.session.async_payment_succeeded"))
    assert completed.json()["outcome"] == "credited"
    assert succeeded.status_code == 200
    assert succeeded.json()["outcome"] == "already_settled"
    assert shop.available() == GROWTH_MICROS
    shop.verify_ledger()


def test_async_payment_waits_for_success(shop: Shop) -> None:
    order = shop.order()
    pending = shop.post_event(session_event(order, payment_status="unpaid"))
    assert pending.json()["outcome"] == "awaiting_async_payment"
    assert shop.available() == 0
    done = shop.post_event(session_event(order, "checkout.session.async_payment_succeeded"))
    assert done.json()["outcome"] == "credited"
    assert shop.available() == GROWTH_MICROS


def test_async_payment_failure_cancels(shop: Shop) -> None:
    order = shop.order()
    shop.post_event(session_event(order, payment_status="unpaid"))
    failed = shop.post_event(
        session_event(order, "checkout.session.async_payment_failed", payment_status="unpaid")
    )
    assert failed.json()["outcome"] == "payment_failed"
    assert shop.get(order.id).status == "cancelled"
    assert shop.available() == 0


def test_events_out_of_order(shop: Shop) -> None:
    # A late "expired" after the payment changes nothing.
    paid = shop.order()
    shop.post_event(session_event(paid))
    late = shop.post_event(session_event(paid, "checkout.session.expired", payment_status="unpaid"))
    assert late.json()["outcome"] == "ignored"
    assert shop.get(paid.id).status == "paid"
    # A payment that arrives after "expired" still credits: the money was taken.
    expired = shop.order()
    shop.post_event(session_event(expired, "checkout.session.expired", payment_status="unpaid"))
    assert shop.get(expired.id).status == "expired"
    settled = shop.post_event(session_event(expired, payment_intent="pi_test_2"))
    assert settled.json()["outcome"] == "credited"
    assert shop.get(expired.id).status == "paid"
    assert shop.available() == 2 * GROWTH_MICROS
    shop.verify_ledger()


def test_refund_event_before_payment_event_is_applied_after_it(shop: Shop) -> None:
    order = shop.order()
    refund = charge_refunded_event(
        event_id="evt_refund_early", payment_intent="pi_early", amount_refunded=order.gross_minor
    )
    early = shop.post_event(refund)
    assert early.status_code == 200 and early.json()["outcome"] == "unknown_order"
    shop.post_event(session_event(order, payment_intent="pi_early"))
    final = shop.get(order.id)
    assert final.status == "refunded"
    assert final.refunded_minor == order.gross_minor
    assert shop.available() == 0
    assert [e.outcome for e in shop.events()] == ["refunded", "credited"]
    shop.verify_ledger()


@pytest.mark.parametrize(
    ("amount_delta", "currency"),
    [(-1, None), (+100, None), (0, "USD")],
    ids=["under", "over", "currency"],
)
def test_amount_or_currency_mismatch_is_recorded_not_credited(
    shop: Shop, amount_delta: int, currency: str | None
) -> None:
    order = shop.order()
    event = session_event(order, amount=order.gross_minor + amount_delta, currency=currency)
    answer = shop.post_event(event)
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "amount_mismatch"
    assert shop.available() == 0
    assert shop.get(order.id).status == "awaiting_payment"
    [stored] = shop.events()
    assert stored.order_id == order.id and "not credited" in stored.detail


def test_unknown_order_and_unknown_type_are_acknowledged(shop: Shop) -> None:
    order = shop.order()
    event = session_event(order)
    event["data"]["object"]["metadata"] = {"order_id": "ord_nope"}
    event["data"]["object"]["client_reference_id"] = None
    unknown = shop.post_event(event)
    assert unknown.status_code == 200 and unknown.json()["outcome"] == "unknown_order"
    other = {"id": "evt_other", "type": "customer.created", "data": {"object": {"id": "cus_1"}}}
    ignored = shop.post_event(other)
    assert ignored.status_code == 200 and ignored.json()["outcome"] == "ignored"
    assert shop.available() == 0


def test_crash_between_credit_and_record_keeps_both_or_neither(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from creditdash.billing.payments import orders

    order = shop.order()
    real_settle = orders.settle

    def settle_then_crash(*args: object, **kwargs: object) -> bool:
        assert real_settle(*args, **kwargs)  # type: ignore[arg-type]
        raise RuntimeError("the process died here")

    monkeypatch.setattr(orders, "settle", settle_then_crash)
    crashed = shop.post_event(session_event(order))
    assert crashed.status_code == 500
    assert shop.available() == 0 and shop.event_count() == 0
    assert shop.get(order.id).status == "awaiting_payment"
    monkeypatch.setattr(orders, "settle", real_settle)
    redelivered = shop.post_event(session_event(order))
    assert redelivered.json()["outcome"] == "credited"
    assert shop.available() == GROWTH_MICROS
    shop.verify_ledger()
