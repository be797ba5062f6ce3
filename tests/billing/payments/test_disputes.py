"""Disputes: the disputed credits are frozen by a ledger hold, then released or taken back."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from creditdash import jobs
from creditdash.billing import ledger
from creditdash.billing.codes import TransferCode, dispute_hold_key
from creditdash.billing.health import check
from creditdash.billing.invoicing.models import Invoice
from creditdash.billing.models import Transfer
from creditdash.billing.payments import disputes, refunds
from creditdash.billing.payments.models import PaymentOrder
from creditdash.billing.payments.reconcile_models import Dispute
from creditdash.core import db
from creditdash.core.audit import AuditEntry
from creditdash.core.errors import InsufficientCredits
from creditdash.core.outbox import Event
from creditdash.notify import dispatch
from tests.billing.payments.helpers import spend
from tests.billing.shop import Shop, session_event

GROWTH_CREDITS = 55_000_000  # 50.00 EUR buys 50 credits and 5 bonus credits


def dispute_event(
    event_type: str,
    *,
    dispute_id: str = "dp_1",
    payment_intent: str = "pi_disputed",
    amount: int = 5000,
    currency: str = "eur",
    status: str = "needs_response",
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{event_type}_{dispute_id}_{status}",
        "object": "event",
        "type": event_type,
        "data": {
            "object": {
                "id": dispute_id,
                "object": "dispute",
                "amount": amount,
                "currency": currency,
                "charge": "ch_disputed",
                "payment_intent": payment_intent,
                "reason": "fraudulent",
                "status": status,
            }
        },
    }


def _paid_order(shop: Shop) -> str:
    order = shop.order("Growth")
    answer = shop.post_event(session_event(order, payment_intent="pi_disputed"), provider="stripe")
    assert answer.json()["outcome"] == "credited"
    assert shop.available() == GROWTH_CREDITS
    return order.id


def _dispute(dispute_id: str = "dp_1") -> Dispute:
    with db.session_scope(readonly=True) as session:
        found = disputes.find_dispute(session, "stripe", dispute_id)
        assert found is not None
        session.expunge(found)
        return found


def _healthy() -> None:
    with db.session_scope(readonly=True, snapshot=True) as session:
        assert check(session) == []


def _can_spend(shop: Shop, micros: int) -> bool:
    """What the gateway's hold would say: reserve, then let go."""
    try:
        with db.session_scope() as session:
            held = ledger.hold(
                session,
                idempotency_key=f"probe:{micros}:{shop.available()}",
                debit_account_id=shop.account_id,
                credit_account_id=ledger.platform_account_id(session, ledger.USAGE_REVENUE),
                amount_micros=micros,
                code=TransferCode.USAGE,
            )
            assert held.id is not None
            ledger.void(session, hold_id=held.id)
    except InsufficientCredits:
        return False
    return True


def test_open_dispute_freezes_the_credits_and_won_releases_them(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order_id = _paid_order(shop)
    # 20.00 of the 50.00 EUR disputed: two fifths of 55 credits are frozen.
    opened = shop.post_event(
        dispute_event("charge.dispute.created", amount=2000), provider="stripe"
    )
    assert opened.status_code == 200 and opened.json()["outcome"] == "dispute_opened"
    frozen = GROWTH_CREDITS * 2000 // 5000
    assert shop.available() == GROWTH_CREDITS - frozen
    assert not _can_spend(shop, GROWTH_CREDITS - frozen + 1)
    assert _can_spend(shop, GROWTH_CREDITS - frozen)
    dispute = _dispute()
    assert dispute.status == "open" and dispute.frozen_micros == frozen
    assert dispute.order_id == order_id and dispute.shortfall_micros == 0
    _healthy()
    # The hold never expires by the clock: the jobs loop's hold expiry leaves it alone.
    assert jobs.expire_holds_once() == 0
    assert shop.available() == GROWTH_CREDITS - frozen

    won = shop.post_event(
        dispute_event("charge.dispute.closed", amount=2000, status="won"), provider="stripe"
    )
    assert won.json()["outcome"] == "dispute_won"
    assert shop.available() == GROWTH_CREDITS
    assert _dispute().status == "won"
    _healthy()


def test_lost_dispute_takes_exactly_the_frozen_credits_and_credits_the_invoice(
    stripe_shop: Shop,
) -> None:
    shop = stripe_shop
    order_id = _paid_order(shop)
    shop.post_event(dispute_event("charge.dispute.created"), provider="stripe")
    assert shop.available() == 0
    lost = shop.post_event(dispute_event("charge.dispute.closed", status="lost"), provider="stripe")
    assert lost.json()["outcome"] == "dispute_lost"
    assert shop.available() == 0
    with db.session_scope(readonly=True) as session:
        hold = session.execute(
            select(Transfer).where(Transfer.idempotency_key == dispute_hold_key(_dispute().id))
        ).scalar_one()
        [posted] = session.execute(select(Transfer).where(Transfer.pending_id == hold.id)).scalars()
        assert posted.kind == "post" and posted.amount_micros == GROWTH_CREDITS
        notes = list(
            session.execute(
                select(Invoice).where(Invoice.order_id == order_id, Invoice.kind == "credit_note")
            ).scalars()
        )
        assert [n.gross_minor for n in notes] == [5000]
        assert notes[0].refund_id == f"dispute:{_dispute().id}"
        # The issuer returned the money: a refund on top is refused by the policy.
        order = session.get(PaymentOrder, order_id)
        assert order is not None
        limit = refunds.refund_limit(session, order)
        assert limit.max_minor == 0 and limit.why == "the payment is disputed"
    _healthy()


def test_replayed_dispute_events_change_nothing(stripe_shop: Shop) -> None:
    shop = stripe_shop
    _paid_order(shop)
    created = dispute_event("charge.dispute.created", amount=1000)
    shop.post_event(created, provider="stripe")
    after_open = shop.available()
    again = shop.post_event(created, provider="stripe")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    # The same dispute in another created event (a new event id) is already recorded.
    other = shop.post_event({**created, "id": "evt_other"}, provider="stripe")
    assert other.json()["outcome"] == "already_recorded"
    assert shop.available() == after_open
    closed = dispute_event("charge.dispute.closed", amount=1000, status="lost")
    shop.post_event(closed, provider="stripe")
    after_close = shop.available()
    assert shop.post_event(closed, provider="stripe").json()["duplicate"] is True
    late = shop.post_event(
        dispute_event("charge.dispute.closed", amount=1000, status="won", event_id="evt_w"),
        provider="stripe",
    )
    assert late.json()["outcome"] == "already_closed"
    assert shop.available() == after_close == GROWTH_CREDITS - GROWTH_CREDITS // 5
    _healthy()


def test_closed_before_created_is_applied_once(stripe_shop: Shop) -> None:
    shop = stripe_shop
    _paid_order(shop)
    lost = shop.post_event(dispute_event("charge.dispute.closed", status="lost"), provider="stripe")
    assert lost.json()["outcome"] == "dispute_lost"
    assert shop.available() == 0
    late_created = shop.post_event(dispute_event("charge.dispute.created"), provider="stripe")
    assert late_created.json()["outcome"] == "already_recorded"
    assert shop.available() == 0 and _dispute().status == "lost"
    _healthy()


def test_won_before_created_freezes_nothing(stripe_shop: Shop) -> None:
    shop = stripe_shop
    _paid_order(shop)
    shop.post_event(
        dispute_event("charge.dispute.closed", dispute_id="dp_w", status="warning_closed"),
        provider="stripe",
    )
    shop.post_event(dispute_event("charge.dispute.created", dispute_id="dp_w"), provider="stripe")
    assert shop.available() == GROWTH_CREDITS
    assert _dispute("dp_w").status == "warning_closed"
    _healthy()


def test_spent_credits_are_recorded_as_shortfall(stripe_shop: Shop) -> None:
    shop = stripe_shop
    _paid_order(shop)
    spend(shop, 40_000_000, "spent-before-dispute")
    shop.post_event(dispute_event("charge.dispute.created"), provider="stripe")
    dispute = _dispute()
    assert dispute.frozen_micros == 15_000_000 and dispute.shortfall_micros == 40_000_000
    assert shop.available() == 0
    shop.post_event(dispute_event("charge.dispute.closed", status="lost"), provider="stripe")
    assert shop.available() == 0
    _healthy()


def test_dispute_tells_the_owners_and_the_operator(stripe_shop: Shop) -> None:
    shop = stripe_shop
    _paid_order(shop)
    shop.post_event(dispute_event("charge.dispute.created"), provider="stripe")
    with db.session_scope() as session:
        [event] = session.execute(select(Event).where(Event.type == "dispute.opened")).scalars()
        assert event.customer_id == shop.customer_id
        assert event.data()["credits_frozen_micros"] == GROWTH_CREDITS
        audit = session.execute(
            select(AuditEntry).where(AuditEntry.action == "payment.dispute_opened")
        ).scalars()
        assert len(list(audit)) == 1
        assert "dispute.opened" in dispatch.AUDIENCES


def test_dispute_for_an_unknown_payment_changes_nothing(stripe_shop: Shop) -> None:
    shop = stripe_shop
    _paid_order(shop)
    answer = shop.post_event(
        dispute_event("charge.dispute.created", payment_intent="pi_other"), provider="stripe"
    )
    assert answer.status_code == 200 and answer.json()["outcome"] == "unknown_payment"
    assert shop.available() == GROWTH_CREDITS


@pytest.mark.parametrize("amount", [0, -5])
def test_dispute_without_a_positive_amount_is_ignored(stripe_shop: Shop, amount: int) -> None:
    shop = stripe_shop
    _paid_order(shop)
    answer = shop.post_event(
        dispute_event("charge.dispute.created", amount=amount), provider="stripe"
    )
    assert answer.json()["outcome"] == "ignored"
    assert shop.available() == GROWTH_CREDITS


def test_dispute_before_the_payment_settles_is_applied_when_it_does(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = shop.order("Growth")
    early = shop.post_event(dispute_event("charge.dispute.created"), provider="stripe")
    assert early.json()["outcome"] == "unknown_payment"
    assert shop.available() == 0
    paid = shop.post_event(session_event(order, payment_intent="pi_disputed"), provider="stripe")
    assert paid.json()["outcome"] == "credited"
    # Credited and frozen at once: nothing of the disputed payment is spendable.
    assert shop.available() == 0
    assert _dispute().frozen_micros == GROWTH_CREDITS
    [stored] = [e for e in shop.events() if e.event_type == "charge.dispute.created"]
    assert stored.outcome == "dispute_opened" and stored.order_id == order.id
    shop.post_event(dispute_event("charge.dispute.closed", status="won"), provider="stripe")
    assert shop.available() == GROWTH_CREDITS
    _healthy()
