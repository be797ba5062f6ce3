"""Refunds: capped by the published policy, proportional credits, at most once per refund id."""

from __future__ import annotations

from datetime import timedelta

import pytest

from creditdash.billing import adjustments
from creditdash.billing.payments import orders, refunds
from creditdash.billing.payments.models import PaymentOrder
from creditdash.core import db, settings
from creditdash.core.audit import CLI
from creditdash.core.errors import Conflict, IdempotencyConflict, ValidationFailed
from creditdash.core.timeutil import utcnow
from tests.billing.shop import Shop, session_event


def _paid_growth(shop: Shop, intent: str = "pi_1") -> PaymentOrder:
    order = shop.order("Growth")
    assert shop.post_event(session_event(order, payment_intent=intent)).json()["outcome"] == (
        "credited"
    )
    return shop.get(order.id)


def _refund(order_id: str, amount_minor: int, refund_id: str) -> object:
    return refunds.refund_order(
        order_id, amount_minor=amount_minor, refund_id=refund_id, actor=CLI, reason="test"
    )


def _spend(shop: Shop, micros: int) -> None:
    with db.session_scope() as session:
        adjustments.debit_credits(
            session,
            customer_id=shop.customer_id,
            amount_micros=micros,
            reason="stands in for metered usage",
            actor=CLI,
            idempotency_key=f"spend:{shop.customer_id}:{micros}",
        )


def test_partial_then_full_refund_takes_back_exactly_what_was_granted(shop: Shop) -> None:
    order = _paid_growth(shop)
    _refund(order.id, 1234, "rf-a")  # 12.34 EUR of 50.00
    assert shop.get(order.id).status == "partially_refunded"
    # floor(55 credits * 1234 / 5000) = 13.574 credits
    assert shop.available() == 55_000_000 - 13_574_000
    _refund(order.id, order.gross_minor - 1234, "rf-b")
    final = shop.get(order.id)
    assert final.status == "refunded" and final.refunded_minor == order.gross_minor
    assert final.refunded_credits_micros == 55_000_000
    assert shop.available() == 0
    shop.verify_ledger()


def test_refund_is_at_most_once_per_refund_id(shop: Shop) -> None:
    order = _paid_growth(shop)
    first = _refund(order.id, 1000, "rf-once")
    second = _refund(order.id, 1000, "rf-once")
    assert first.id == second.id  # type: ignore[attr-defined]
    assert shop.get(order.id).refunded_minor == 1000
    assert shop.available() == 44_000_000
    with pytest.raises(IdempotencyConflict):
        _refund(order.id, 2000, "rf-once")
    assert shop.get(order.id).refunded_minor == 1000
    shop.verify_ledger()


def test_refund_is_capped_by_what_is_left(shop: Shop) -> None:
    order = _paid_growth(shop)
    _refund(order.id, 4000, "rf-big")
    with pytest.raises(ValidationFailed, match=r"at most 10.00 EUR"):
        _refund(order.id, 1001, "rf-over")
    assert shop.get(order.id).refunded_minor == 4000
    shop.verify_ledger()


def test_used_credits_are_not_refundable_by_default(shop: Shop) -> None:
    order = _paid_growth(shop)
    _spend(shop, 40_000_000)  # 15 of the 55 credits are left
    with db.session_scope(readonly=True) as session:
        limit = refunds.refund_limit(session, shop.get(order.id))
    # floor(55 * a / 5000) <= 15 credits  ->  a <= 1363 cents
    assert limit.max_minor == 1363 and limit.why == "unused credits of this order"
    with pytest.raises(ValidationFailed, match=r"at most 13.63 EUR"):
        _refund(order.id, 1364, "rf-too-much")
    _refund(order.id, 1363, "rf-max")
    assert 0 <= shop.available() < 11_000
    shop.verify_ledger()


def test_policy_can_allow_refunding_used_credits(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITDASH_REFUND_CONSUMED_CREDITS", "1")
    settings.reset_settings()
    order = _paid_growth(shop)
    _spend(shop, 50_000_000)
    refund = _refund(order.id, order.gross_minor, "rf-all")
    # Only the 5 credits still held can be taken back; the rest is recorded as unrecovered.
    assert refund.credits_micros == 5_000_000  # type: ignore[attr-defined]
    assert refund.unrecovered_micros == 50_000_000  # type: ignore[attr-defined]
    assert shop.available() == 0
    shop.verify_ledger()


def test_no_refund_after_the_window(shop: Shop) -> None:
    order = _paid_growth(shop)
    with db.session_scope() as session:
        stored = session.get(PaymentOrder, order.id)
        assert stored is not None
        stored.paid_at = utcnow() - timedelta(days=15)
    with pytest.raises(ValidationFailed, match="14-day window passed"):
        _refund(order.id, 100, "rf-late")
    assert shop.available() == 55_000_000


def test_unpaid_orders_cannot_be_refunded(shop: Shop) -> None:
    order = shop.order("Growth")
    with pytest.raises(ValidationFailed, match="awaiting_payment"):
        _refund(order.id, 100, "rf-unpaid")
    with db.session_scope() as session, pytest.raises(Conflict):
        refunds.apply_refund(
            session,
            orders.get_order(session, order.id),
            refund_id="rf-direct",
            amount_minor=100,
            actor=CLI,
            reason="x",
            status="succeeded",
        )


def test_refund_needs_a_reason_and_a_valid_id(shop: Shop) -> None:
    order = _paid_growth(shop)
    with pytest.raises(ValidationFailed, match="reason"):
        refunds.refund_order(order.id, amount_minor=1, refund_id="ok", actor=CLI, reason=" ")
    with pytest.raises(ValidationFailed, match="refund id"):
        refunds.refund_order(order.id, amount_minor=1, refund_id="bad id!", actor=CLI, reason="x")
    assert shop.get(order.id).refunded_minor == 0


def test_policy_text_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITDASH_REFUND_WINDOW_DAYS", "30")
    settings.reset_settings()
    assert refunds.policy_text() == (
        "Refunds within 30 days of payment, for the credits of that order not yet used."
    )
    monkeypatch.setenv("CREDITDASH_REFUND_CONSUMED_CREDITS", "1")
    settings.reset_settings()
    assert "including credits already used" in refunds.policy_text()
    settings.reset_settings()


def test_credits_for_refund_is_the_cumulative_take_back() -> None:
    order = PaymentOrder(
        id="ord_x",
        customer_id="cus_x",
        package_name="Growth",
        currency="EUR",
        gross_minor=5000,
        credits_micros=50_000_000,
        bonus_micros=5_000_000,
    )
    # The first refund: floor(55 credits * 1234 / 5000).
    assert refunds.credits_for_refund(order, 1234, refunded_before_minor=0) == 13_574_000
    order.refunded_credits_micros = 13_574_000
    # The rest of the order takes back exactly what remains, with no rounding drift.
    rest = refunds.credits_for_refund(order, 5000 - 1234, refunded_before_minor=1234)
    assert rest == 55_000_000 - 13_574_000


def test_preview_shows_what_the_refund_then_takes(shop: Shop) -> None:
    order = _paid_growth(shop)
    with db.session_scope(readonly=True) as session:
        preview = refunds.preview_refund(session, order.id, amount_minor=1234)
    assert (preview.credits_micros, preview.unrecovered_micros) == (13_574_000, 0)
    assert preview.currency == "EUR" and preview.customer_name
    assert shop.available() == 55_000_000  # a preview writes nothing
    refund = _refund(order.id, 1234, "rf-previewed")
    assert refund.credits_micros == preview.credits_micros  # type: ignore[attr-defined]
    with db.session_scope(readonly=True) as session:
        second = refunds.preview_refund(session, order.id, amount_minor=5000 - 1234)
        with pytest.raises(ValidationFailed, match=r"at most 37.66 EUR"):
            refunds.preview_refund(session, order.id, amount_minor=5000)
        with pytest.raises(ValidationFailed, match="positive"):
            refunds.preview_refund(session, order.id, amount_minor=0)
    assert second.credits_micros == 55_000_000 - 13_574_000
