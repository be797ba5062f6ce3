"""The books' health check is the ledger's check and the payments' check, in one list: an order
marked paid without its credit fails it, as it fails `creditdash ledger verify`."""

from __future__ import annotations

from sqlalchemy import update

from creditdash.billing import health
from creditdash.billing.payments.models import PaymentOrder
from creditdash.core import db
from tests.billing.shop import Shop


def _check() -> list[str]:
    with db.session_scope(readonly=True, snapshot=True) as session:
        return health.check(session)


def test_healthy_books_report_nothing(shop: Shop) -> None:
    shop.order()
    assert _check() == []


def test_an_order_paid_without_its_credit_is_reported(shop: Shop) -> None:
    order = shop.order()
    with db.session_scope() as session:
        session.execute(
            update(PaymentOrder).where(PaymentOrder.id == order.id).values(status="paid")  # type: ignore[arg-type]
        )
    problems = _check()
    assert problems and all(order.id in p for p in problems)
