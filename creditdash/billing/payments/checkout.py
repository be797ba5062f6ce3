"""Opening a hosted checkout page for an order.

The provider is called outside any database transaction (a slow provider must not hold a
write lock), between two short ones. The provider's idempotency key is the order id, so a
retry after a crash or a timeout gets the same checkout session back instead of a second one.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col

from creditdash.billing.payments import orders
from creditdash.billing.payments.models import PaymentOrder
from creditdash.billing.payments.providers import CheckoutPage, PaymentProvider, provider_named
from creditdash.core import db
from creditdash.core.errors import Conflict
from creditdash.core.settings import Settings, get_settings


def return_urls(order: PaymentOrder, settings: Settings) -> tuple[str, str]:
    base = settings.resolved_public_url()
    return (
        f"{base}/billing?checkout=success&order={order.id}",
        f"{base}/billing?checkout=cancelled&order={order.id}",
    )


def open_checkout(
    order_id: str,
    *,
    customer_id: str | None = None,
    settings: Settings | None = None,
    provider: PaymentProvider | None = None,
) -> PaymentOrder:
    """Give an awaiting checkout order its payment page (or return the one it has)."""
    settings = settings or get_settings()
    with db.session_scope(readonly=True) as session:
        order = orders.get_order(session, order_id, customer_id=customer_id)
        session.expunge(order)
    if order.method != "checkout":
        raise Conflict(f"order {order.id} is paid by bank transfer, not at a checkout page")
    if order.status != "awaiting_payment":
        raise Conflict(f"order {order.id} is {order.status}; it can no longer be paid")
    if order.checkout_url:
        return order
    provider = provider or provider_named(order.provider, settings)
    success_url, cancel_url = return_urls(order, settings)
    page: CheckoutPage = provider.create_checkout(
        order, success_url=success_url, cancel_url=cancel_url
    )
    with db.session_scope() as session:
        # Only the first writer stores its page; a concurrent opener reads the stored one.
        session.execute(
            update(PaymentOrder)
            .where(
                col(PaymentOrder.id) == order.id,
                col(PaymentOrder.checkout_session_id).is_(None),
            )
            .values(checkout_session_id=page.session_id, checkout_url=page.url)
            .execution_options(synchronize_session=False)
        )
        stored = orders.get_order(session, order.id)
        session.expunge(stored)
    return stored
