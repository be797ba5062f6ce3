"""Payment webhooks: verify the signature on the raw body, store the event once, apply it.

verify_event() runs before anything is parsed or written. apply_event() stores the event with
UNIQUE (provider, event_id) and applies its effect in the same transaction, so an event is
either recorded with its effect or not at all; a concurrent duplicate meets the unique
constraint and is acknowledged without a second effect.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from creditdash.billing.payments import autotopup_results, disputes, orders, refunds
from creditdash.billing.payments.models import PaymentEvent, PaymentOrder, Refund
from creditdash.core.errors import CreditdashError
from creditdash.core.money import format_minor

TOLERANCE_S = 300
MAX_EVENT_BYTES = 512 * 1024


class SignatureRejected(CreditdashError):
    code = "signature_rejected"


@dataclass(frozen=True)
class Applied:
    event_id: str
    event_type: str
    outcome: str
    order_id: str | None = None
    duplicate: bool = False

    def describe(self) -> dict[str, object]:
        return {
            "received": True,
            "event_id": self.event_id,
            "type": self.event_type,
            "outcome": self.outcome,
            "duplicate": self.duplicate,
        }


def verify_event(
    payload: bytes, header: str | None, secrets: list[str], *, now: float | None = None
) -> dict[str, Any]:
    """The event, if and only if one of the secrets signed this exact body recently."""
    if not header:
        raise SignatureRejected("missing Stripe-Signature header")
    if not secrets:
        raise SignatureRejected("no webhook secret is configured for this endpoint")
    if len(payload) > MAX_EVENT_BYTES:
        raise SignatureRejected("event body too large")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureRejected("event body is not UTF-8") from None
    now = time.time() if now is None else now
    timestamp = _signed_at(header)
    # The library refuses old timestamps; a timestamp from the future is refused here too,
    # so a captured signature cannot be prepared for replay later.
    if timestamp > now + TOLERANCE_S:
        raise SignatureRejected("signature timestamp is in the future")
    if timestamp < now - TOLERANCE_S:
        raise SignatureRejected("signature timestamp is too old")
    import stripe  # on first use: the library adds about 27 MiB to a gateway worker

    for secret in secrets:
        try:
            # _signed_at accepted the header only if the library reads the same timestamp
            # from it, so the signature checked here covers the timestamp checked above.
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance=None)
        except (stripe.SignatureVerificationError, TypeError, ValueError):
            continue  # TypeError: a non-ASCII signature cannot be compared, so it is no match
        break
    else:
        raise SignatureRejected("no signature matches the body")
    try:
        event = json.loads(text)
    except ValueError:
        raise SignatureRejected("event body is not JSON") from None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(event.get("data"), dict)
        or not isinstance(event["data"].get("object"), dict)
    ):
        raise SignatureRejected("event has no id, type or data.object")
    return event


_HEADER_ITEM = re.compile(r"^[a-z0-9]+=[A-Za-z0-9]+$")


def _signed_at(header: str) -> int:
    """The one timestamp of a strictly formed header: `t=<digits>` and `v1=<hex>` items, comma
    separated, no spaces. Anything looser is refused, so that no other parser of the same header
    (the library's) can read a different timestamp from it."""
    if len(header) > 4096:
        raise SignatureRejected("signature header too long")
    items = header.split(",")
    if not all(_HEADER_ITEM.match(item) for item in items):
        raise SignatureRejected("malformed signature header")
    stamps = [item[2:] for item in items if item.startswith("t=")]
    if len(stamps) != 1 or not stamps[0].isdigit():
        raise SignatureRejected("signature header needs exactly one timestamp")
    if not any(item.startswith("v1=") for item in items):
        raise SignatureRejected("signature header has no v1 signature")
    return int(stamps[0])


def apply_event(session: Session, *, provider: str, event: dict[str, Any]) -> Applied:
    """Store the event once and apply it; duplicates and unknown types change nothing."""
    obj: dict[str, Any] = event["data"]["object"]
    stored = PaymentEvent(
        provider=provider,
        event_id=event["id"][:255],
        event_type=event["type"][:80],
        outcome="received",
        payload_json=json.dumps(event, sort_keys=True),
    )
    try:
        with session.begin_nested():
            session.add(stored)
    except IntegrityError:
        return Applied(stored.event_id, stored.event_type, "duplicate", duplicate=True)
    handler = _HANDLERS.get(stored.event_type, _ignore)
    outcome, order, detail = handler(session, provider, stored, obj)
    stored.outcome = outcome
    stored.order_id = order.id if order is not None else None
    stored.detail = detail[:500]
    session.add(stored)
    session.flush()
    return Applied(stored.event_id, stored.event_type, outcome, stored.order_id)


Outcome = tuple[str, PaymentOrder | None, str]


def _find_order(session: Session, provider: str, obj: dict[str, Any]) -> PaymentOrder | None:
    metadata = obj.get("metadata")
    order_id = (metadata.get("order_id") if isinstance(metadata, dict) else None) or obj.get(
        "client_reference_id"
    )
    if not isinstance(order_id, str):
        return None
    order = session.get(PaymentOrder, order_id)
    # An event only speaks for orders of its own provider (a sandbox event never pays a Stripe
    # order), and only for the checkout session we opened for it.
    if order is None or order.provider != provider:
        return None
    if order.checkout_session_id and obj.get("id") != order.checkout_session_id:
        return None
    return order


def _paid(session: Session, provider: str, event: PaymentEvent, obj: dict[str, Any]) -> Outcome:
    if obj.get("mode") == "setup":
        # A card saved for automatic top-ups: setup_intent.succeeded carries the card.
        return "not_applicable", None, "setup session; its setup intent saves the card"
    order = _find_order(session, provider, obj)
    if order is None:
        return "unknown_order", None, "no order of this provider matches the session"
    if obj.get("payment_status") != "paid":
        return "awaiting_async_payment", order, f"payment_status={obj.get('payment_status')}"
    amount, currency = obj.get("amount_total"), str(obj.get("currency") or "").upper()
    if amount != order.gross_minor or currency != order.currency:
        detail = (
            f"paid {amount} {currency or '?'} (minor units), order is "
            f"{order.gross_minor} {order.currency}; not credited"
        )
        orders.note(session, order, f"{provider}:{event.event_id}", detail)
        return "amount_mismatch", order, detail
    payment_id = obj.get("payment_intent") if isinstance(obj.get("payment_intent"), str) else None
    settled = orders.settle(
        session,
        order,
        actor_label=f"{provider}:{event.event_id}",
        from_statuses=orders.SETTLE_FROM_EVENT,
        note_text=f"{event.event_type}",
        provider_payment_id=payment_id,
    )
    if not settled:
        orders.note(session, order, f"{provider}:{event.event_id}", "payment already settled")
        return "already_settled", order, "the order was already settled; nothing credited"
    refunds.apply_early_refunds(session, provider, order)
    disputes.apply_early_disputes(session, provider, order)
    return "credited", order, format_minor(order.gross_minor, order.currency) + " " + order.currency


def order_for_session(session: Session, provider: str, obj: dict[str, Any]) -> PaymentOrder | None:
    """The order a Checkout Session pays, by the same rules as its webhook."""
    return _find_order(session, provider, obj)


def settle_paid_session(
    session: Session, *, provider: str, obj: dict[str, Any], source: str
) -> Outcome:
    """A paid Checkout Session learned from the provider's list rather than its webhook
    (payments reconcile): the same checks and the same orders.settle as
    checkout.session.completed, so whichever comes first credits the order and the other
    credits nothing. `source` names who found it, in the order's history."""
    found = PaymentEvent(
        provider=provider,
        event_id=source[:255],
        event_type="payments reconcile",
        outcome="received",
        payload_json="{}",
    )
    return _paid(session, provider, found, obj)


def _failed(session: Session, provider: str, event: PaymentEvent, obj: dict[str, Any]) -> Outcome:
    order = _find_order(session, provider, obj)
    if order is None:
        return "unknown_order", None, "no order of this provider matches the session"
    if orders.transition(
        session,
        order,
        to_status="cancelled",
        from_statuses=("awaiting_payment", "expired"),
        actor_label=f"{provider}:{event.event_id}",
        note_text="the delayed payment failed",
    ):
        return "payment_failed", order, "order cancelled"
    return "ignored", order, f"order is {order.status}"


def _expired(session: Session, provider: str, event: PaymentEvent, obj: dict[str, Any]) -> Outcome:
    order = _find_order(session, provider, obj)
    if order is None:
        return "unknown_order", None, "no order of this provider matches the session"
    if orders.transition(
        session,
        order,
        to_status="expired",
        from_statuses=("awaiting_payment",),
        actor_label=f"{provider}:{event.event_id}",
        note_text="checkout session expired",
    ):
        return "expired", order, "order expired"
    # A late "expired" for a paid order (events out of order) changes nothing.
    return "ignored", order, f"order is {order.status}"


def _refunded(session: Session, provider: str, event: PaymentEvent, obj: dict[str, Any]) -> Outcome:
    payment_id = obj.get("payment_intent")
    refunded_minor = obj.get("amount_refunded")
    if not isinstance(payment_id, str) or not isinstance(refunded_minor, int):
        return "ignored", None, "charge without payment_intent or amount_refunded"
    event.provider_payment_id = payment_id
    order = session.exec(
        select(PaymentOrder).where(
            col(PaymentOrder.provider) == provider,
            col(PaymentOrder.provider_payment_id) == payment_id,
        )
    ).first()
    if order is None:
        # Possibly ahead of the event that settles the order: applied when that one arrives.
        return "unknown_order", None, f"no settled order for {payment_id} yet"
    return refunds.catch_up_refund(session, order, obj, event)


def _refund_failed(
    session: Session, provider: str, event: PaymentEvent, obj: dict[str, Any]
) -> Outcome:
    """refund.failed / charge.refund.updated: a refund the provider accepted did not go through."""
    if obj.get("status") not in ("failed", "canceled"):
        return "ignored", None, f"refund status {obj.get('status')}"
    metadata = obj.get("metadata")
    ours = metadata.get("refund_id") if isinstance(metadata, dict) else None
    refund = session.get(Refund, ours) if isinstance(ours, str) else None
    if refund is None or refund.provider != provider:
        return "ignored", None, "not a refund creditdash made"
    order = orders.get_order(session, refund.order_id)
    if not refunds.undo_refund(
        session,
        refund.id,
        actor_label=f"{provider}:{event.event_id}",
        failure=f"the provider reports the refund {obj.get('status')}",
    ):
        return "ignored", order, "refund already failed"
    session.refresh(order)
    refunds.reconcile_refunds(session, order)
    return "refund_failed", order, f"refund {refund.id} undone"


def _ignore(session: Session, provider: str, event: PaymentEvent, obj: dict[str, Any]) -> Outcome:
    return "ignored", None, "event type not used"


def _setup_succeeded(
    session: Session, provider: str, event: PaymentEvent, obj: dict[str, Any]
) -> Outcome:
    return autotopup_results.setup_succeeded(session, provider, obj)


def _method_attached(
    session: Session, provider: str, event: PaymentEvent, obj: dict[str, Any]
) -> Outcome:
    return autotopup_results.method_attached(session, provider, obj)


_HANDLERS = {
    "checkout.session.completed": _paid,
    "checkout.session.async_payment_succeeded": _paid,
    "checkout.session.async_payment_failed": _failed,
    "checkout.session.expired": _expired,
    "charge.refunded": _refunded,
    "refund.failed": _refund_failed,
    "charge.refund.updated": _refund_failed,
    # Automatic top-ups (billing/payments/autotopup_results.py): the saved card, and the
    # off-session payments, which settle through the same orders.settle as a checkout.
    "setup_intent.succeeded": _setup_succeeded,
    "payment_method.attached": _method_attached,
    "payment_intent.succeeded": autotopup_results.intent_succeeded,
    "payment_intent.payment_failed": autotopup_results.intent_failed,
    "payment_intent.requires_action": autotopup_results.intent_failed,
    # Chargebacks (billing/payments/disputes.py): freeze the credits, then release or take them.
    **disputes.HANDLERS,
}
