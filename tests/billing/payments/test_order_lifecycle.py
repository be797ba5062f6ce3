"""An order's life: bounds on what can be settled, bank transfers approved late and only by a
named checker, the history's previous status, and checkout never reopened for a closed order."""

from __future__ import annotations

from datetime import timedelta

import pytest

from creditdash.billing.payments import checkout, manual, orders
from creditdash.core import db
from creditdash.core.audit import CLI
from creditdash.core.errors import Forbidden, ValidationFailed
from creditdash.core.timeutil import utcnow
from tests.billing.shop import (
    Shop,
    session_event,
)


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
