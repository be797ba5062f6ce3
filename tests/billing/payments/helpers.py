"""Helpers the payment tests share: a paid order, work released together, grants and spends."""

from __future__ import annotations

import threading
from collections.abc import Callable

from creditdash.billing import adjustments
from creditdash.billing.payments.models import PaymentOrder
from creditdash.core import db
from creditdash.core.audit import CLI
from tests.billing.shop import Shop, session_event


def paid(
    shop: Shop, package: str = "Growth", intent: str = "pi_1", provider: str = "sandbox"
) -> PaymentOrder:
    order = shop.order(package)
    answer = shop.post_event(session_event(order, payment_intent=intent), provider=provider)
    assert answer.json()["outcome"] == "credited"
    return shop.get(order.id)


def together(*work: Callable[[], object]) -> list[object]:
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


def grant(shop: Shop, micros: int, key: str) -> None:
    with db.session_scope() as session:
        adjustments.grant_credits(
            session,
            customer_id=shop.customer_id,
            amount_micros=micros,
            reason="promo",
            actor=CLI,
            idempotency_key=key,
        )


def spend(shop: Shop, micros: int, key: str) -> None:
    with db.session_scope() as session:
        adjustments.debit_credits(
            session,
            customer_id=shop.customer_id,
            amount_micros=micros,
            reason="usage",
            actor=CLI,
            idempotency_key=key,
        )
