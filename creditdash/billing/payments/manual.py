"""Manual payment orders: a bank transfer with a reference, settled by an admin's approval.

Maker-checker: the admin who opened an order on a customer's behalf cannot also approve it.
Approval credits exactly once: the conditional status change and the order-keyed ledger
transfers both refuse a second settlement.
"""

from __future__ import annotations

from sqlmodel import Session

from creditdash.billing.payments import orders
from creditdash.billing.payments.models import PaymentOrder
from creditdash.core.audit import Actor, record
from creditdash.core.errors import Conflict, Forbidden, ValidationFailed
from creditdash.core.money import format_minor


def _manual_order(session: Session, order_id: str) -> PaymentOrder:
    order = orders.get_order(session, order_id)
    if order.method != "manual":
        raise Conflict(f"order {order.id} is paid at checkout; its provider's event settles it")
    return order


def approve(
    session: Session, *, order_id: str, actor: Actor, payment_reference: str
) -> PaymentOrder:
    """Record the received transfer and credit the order."""
    if actor.user_id is None:
        raise Forbidden("approving a payment needs a named admin (maker-checker)")
    payment_reference = (payment_reference or "").strip()
    if not payment_reference or len(payment_reference) > 200:
        raise ValidationFailed("the payment reference (1-200 characters) is required")
    order = _manual_order(session, order_id)
    if order.created_by_user_id is None:
        # Two people must be involved; an order opened anonymously (the command line without
        # --admin) cannot show that its approver is someone else.
        raise Forbidden(
            "this order was opened without a named maker; open it again as a named admin "
            "(--admin) or let the customer open it"
        )
    if order.created_by_user_id == actor.user_id:
        raise Forbidden("the admin who opened this order cannot also approve it")
    if not orders.settle(
        session,
        order,
        actor_label=actor.label,
        from_statuses=orders.SETTLE_FROM_APPROVAL,
        note_text=f"bank transfer approved: {payment_reference}",
        payment_reference=payment_reference,
        settled_by_user_id=actor.user_id,
    ):
        raise Conflict(f"order {order.id} is {order.status}; it cannot be approved")
    record(
        session,
        actor=actor,
        action="order.approve",
        target_type="payment_order",
        target_id=order.id,
        after={
            "status": "paid",
            "payment_reference": payment_reference,
            "gross": format_minor(order.gross_minor, order.currency),
            "currency": order.currency,
        },
    )
    return order


def reject(session: Session, *, order_id: str, actor: Actor, reason: str) -> PaymentOrder:
    """Close a manual order whose payment will not arrive (or was not acceptable)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("a reason is required to reject an order")
    order = _manual_order(session, order_id)
    orders.cancel_order(session, order, actor=actor, reason=f"rejected: {reason}")
    return order
