"""What the provider tells us about auto top-ups, applied in the webhook's transaction.

billing/payments/webhooks.py stores each signed event once and calls these handlers with it:
- setup_intent.succeeded: the card the member saved is confirmed; it becomes the workspace's.
- payment_method.attached: the card's brand, last four digits and expiry.
- payment_intent.succeeded: an automatic order is paid. It settles through orders.settle, the
  same path (and the same ledger keys) as every order, so it is credited at most once.
- payment_intent.payment_failed / payment_intent.requires_action: the order is cancelled,
  nothing is credited, the failure counts towards the pause.

fail_attempt() is also called with the provider's synchronous answer to the charge (a decline
comes back at once and as an event); whichever comes first counts, the other changes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from creditdash.billing.payments import autotopup_rules, orders
from creditdash.billing.payments.autotopup_models import (
    MAX_CONSECUTIVE_FAILURES,
    AutoTopupAttempt,
    AutoTopupRule,
    SavedPaymentMethod,
)
from creditdash.billing.payments.models import PaymentEvent, PaymentOrder
from creditdash.core import db, outbox
from creditdash.core.money import format_minor
from creditdash.core.timeutil import utcnow
from creditdash.routes import AUTOTOPUP_PATH

FAILED_EVENT = "autotopup.failed"
PAUSED_EVENT = "autotopup.paused"

Outcome = tuple[str, PaymentOrder | None, str]

_attempts = AutoTopupAttempt.__table__  # type: ignore[attr-defined]
_rules = AutoTopupRule.__table__  # type: ignore[attr-defined]
_methods = SavedPaymentMethod.__table__  # type: ignore[attr-defined]


def pay_link(order: PaymentOrder) -> str:
    """Where a member pays the same package on-session (a normal checkout)."""
    return f"{AUTOTOPUP_PATH}?pay={order.id}"


# ------------------------------------------------------------------------- saved cards


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def setup_succeeded(session: Session, provider: str, obj: dict[str, Any]) -> Outcome:
    setup_id = _metadata(obj).get("setup_id")
    method_ref = obj.get("payment_method")
    if not isinstance(setup_id, str) or not isinstance(method_ref, str):
        return "ignored", None, "setup intent without setup_id or payment_method"
    method = session.get(SavedPaymentMethod, setup_id)
    if method is None or method.provider != provider:
        return "unknown_setup", None, "no card setup of this provider matches"
    if method.method_ref and method.method_ref != method_ref:
        return "ignored", None, "the setup already saved another card"
    if not autotopup_rules.activate_method(session, method, method_ref=method_ref):
        return "already_applied", None, f"card setup {method.id} is {method.status}"
    return "card_saved", None, f"card {method.id} saved for {method.customer_id}"


def method_attached(session: Session, provider: str, obj: dict[str, Any]) -> Outcome:
    """The card's details, matched by its id, else to the workspace's pending setup at the
    provider's customer (the event may arrive before setup_intent.succeeded)."""
    method_ref, customer_ref, card = obj.get("id"), obj.get("customer"), obj.get("card")
    if not isinstance(method_ref, str) or not isinstance(card, dict):
        return "ignored", None, "payment method without id or card"
    method = session.exec(
        select(SavedPaymentMethod).where(
            col(SavedPaymentMethod.provider) == provider,
            col(SavedPaymentMethod.method_ref) == method_ref,
        )
    ).first()
    if method is None and isinstance(customer_ref, str) and customer_ref:
        method = session.exec(
            select(SavedPaymentMethod)
            .where(
                col(SavedPaymentMethod.provider) == provider,
                col(SavedPaymentMethod.customer_ref) == customer_ref,
                col(SavedPaymentMethod.status) == "pending",
                col(SavedPaymentMethod.method_ref).is_(None),
            )
            .order_by(col(SavedPaymentMethod.created_at).desc())
        ).first()
    if method is None:
        return "unknown_setup", None, "no card setup matches the payment method"
    values: dict[str, Any] = {
        "method_ref": method_ref,
        "brand": str(card.get("brand") or "")[:32],
        "last4": str(card.get("last4") or "")[-4:],
        "exp_month": card.get("exp_month") if isinstance(card.get("exp_month"), int) else None,
        "exp_year": card.get("exp_year") if isinstance(card.get("exp_year"), int) else None,
    }
    session.execute(update(_methods).where(_methods.c.id == method.id).values(**values))
    return "card_details", None, f"{values['brand']} ending {values['last4']}"


# ------------------------------------------------------------------------------ payments


def _attempt_of(
    session: Session, provider: str, obj: dict[str, Any]
) -> tuple[AutoTopupAttempt, PaymentOrder] | None:
    """The automatic order an intent is about, only if its metadata names it and its attempt
    (a Checkout payment's intent names an order too: that order settles by its session)."""
    metadata = _metadata(obj)
    order_id, attempt_id = metadata.get("order_id"), metadata.get("attempt_id")
    if not isinstance(order_id, str) or not isinstance(attempt_id, str):
        return None
    attempt = session.get(AutoTopupAttempt, attempt_id)
    if attempt is None or attempt.order_id != order_id or attempt.provider != provider:
        return None
    order = session.get(PaymentOrder, order_id)
    if order is None or order.provider != provider:
        return None
    return attempt, order


def intent_succeeded(
    session: Session, provider: str, event: PaymentEvent, obj: dict[str, Any]
) -> Outcome:
    found = _attempt_of(session, provider, obj)
    if found is None:
        return "not_applicable", None, "not an automatic top-up"
    attempt, order = found
    actor = f"{provider}:{event.event_id}"
    amount = obj.get("amount_received", obj.get("amount"))
    currency = str(obj.get("currency") or "").upper()
    if amount != order.gross_minor or currency != order.currency:
        detail = (
            f"paid {amount} {currency or '?'} (minor units), order is "
            f"{order.gross_minor} {order.currency}; not credited"
        )
        orders.note(session, order, actor, detail)
        # Money moved that does not match: stop buying until an operator has looked.
        _pause(session, attempt, f"payment {obj.get('id')} did not match its order")
        return "amount_mismatch", order, detail
    payment_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    settled = orders.settle(
        session,
        order,
        actor_label=actor,
        from_statuses=orders.SETTLE_FROM_EVENT,
        note_text=f"{event.event_type} (automatic top-up {attempt.id})",
        provider_payment_id=payment_id,
    )
    _resolve(session, attempt, "succeeded", payment_id=payment_id)
    if not settled:
        orders.note(session, order, actor, "payment already settled")
        return "already_settled", order, "the order was already settled; nothing credited"
    return "credited", order, format_minor(order.gross_minor, order.currency) + " " + order.currency


def intent_failed(
    session: Session, provider: str, event: PaymentEvent, obj: dict[str, Any]
) -> Outcome:
    found = _attempt_of(session, provider, obj)
    if found is None:
        return "not_applicable", None, "not an automatic top-up"
    attempt, order = found
    error = obj.get("last_payment_error")
    code = str(error.get("code") or "") if isinstance(error, dict) else ""
    message = str(error.get("message") or "") if isinstance(error, dict) else ""
    needs_action = event.event_type.endswith("requires_action") or code in (
        "authentication_required",
    )
    if not fail_attempt(
        session,
        attempt.id,
        requires_action=needs_action,
        code=code or ("authentication_required" if needs_action else "card_declined"),
        message=message or ("3-D Secure needed" if needs_action else "the card was declined"),
        actor_label=f"{provider}:{event.event_id}",
    ):
        return "ignored", order, f"attempt {attempt.id} is {attempt.status}"
    return "payment_failed", order, "automatic order cancelled"


def _resolve(
    session: Session, attempt: AutoTopupAttempt, status: str, *, payment_id: str | None = None
) -> bool:
    """Close the attempt (from any state but succeeded: a payment the provider really took wins
    over an earlier failure) and free the workspace's in-flight slot."""
    now = utcnow()
    values: dict[str, Any] = {"status": status, "in_flight_key": None, "resolved_at": now}
    if payment_id:
        values["provider_payment_id"] = payment_id
    moved = session.execute(
        update(_attempts)
        .where(_attempts.c.id == attempt.id, _attempts.c.status != "succeeded")
        .values(**values)
    )
    if db.rowcount(moved) != 1:
        return False
    session.execute(
        update(_rules)
        .where(
            _rules.c.customer_id == attempt.customer_id,
            _rules.c.in_flight_attempt_id == attempt.id,
        )
        .values(in_flight_attempt_id=None, consecutive_failures=0, updated_at=now)
    )
    return True


def fail_attempt(
    session: Session,
    attempt_id: str,
    *,
    requires_action: bool,
    code: str,
    message: str,
    actor_label: str,
) -> bool:
    """The charge did not go through: the order is cancelled, the in-flight slot freed, the
    failure counted (pausing the rule at the third in a row) and the members told, once per
    attempt. False when the attempt was already resolved."""
    now = utcnow()
    status = "requires_action" if requires_action else "failed"
    moved = session.execute(
        update(_attempts)
        .where(_attempts.c.id == attempt_id, _attempts.c.status == "charging")
        .values(
            status=status,
            in_flight_key=None,
            failure_code=code[:64],
            failure_message=message[:500],
            resolved_at=now,
        )
    )
    if db.rowcount(moved) != 1:
        return False
    attempt = session.get(AutoTopupAttempt, attempt_id)
    assert attempt is not None
    session.refresh(attempt)
    order = orders.get_order(session, attempt.order_id)
    orders.transition(
        session,
        order,
        to_status="cancelled",
        from_statuses=("awaiting_payment", "expired"),
        actor_label=actor_label,
        note_text=f"automatic top-up failed: {code}",
    )
    session.execute(
        update(_rules)
        .where(
            _rules.c.customer_id == attempt.customer_id,
            _rules.c.in_flight_attempt_id == attempt.id,
        )
        .values(
            in_flight_attempt_id=None,
            consecutive_failures=_rules.c.consecutive_failures + 1,
            updated_at=now,
        )
    )
    rule = session.get(AutoTopupRule, attempt.customer_id)
    failures = 0
    if rule is not None:
        session.refresh(rule)
        failures = rule.consecutive_failures
    paused = failures >= MAX_CONSECUTIVE_FAILURES and _pause(
        session, attempt, f"{failures} automatic top-ups in a row failed"
    )
    reason = (
        "the card needs 3-D Secure authentication, which cannot happen without you"
        if requires_action
        else f"the payment was declined ({code})"
    )
    outbox.emit(
        session,
        type=FAILED_EVENT,
        customer_id=attempt.customer_id,
        data={
            "attempt_id": attempt.id,
            "order_id": order.id,
            "package": order.package_name,
            "amount_minor": order.gross_minor,
            "currency": order.currency,
            "code": code,
            "reason": reason,
            "requires_action": requires_action,
            "consecutive_failures": failures,
            "paused": paused,
            "pay_path": pay_link(order),
        },
        dedupe_key=f"{FAILED_EVENT}:{attempt.id}",
    )
    return True


def _pause(session: Session, attempt: AutoTopupAttempt, reason: str) -> bool:
    """Pause an active rule and tell the members, once; False if it was not active."""
    moved = session.execute(
        update(_rules)
        .where(_rules.c.customer_id == attempt.customer_id, _rules.c.status == "active")
        .values(status="paused", paused_reason=reason[:500], updated_at=utcnow())
    )
    if db.rowcount(moved) != 1:
        return False
    order = orders.get_order(session, attempt.order_id)
    outbox.emit(
        session,
        type=PAUSED_EVENT,
        customer_id=attempt.customer_id,
        data={
            "attempt_id": attempt.id,
            "reason": reason,
            "package": order.package_name,
            "pay_path": pay_link(order),
        },
        dedupe_key=f"{PAUSED_EVENT}:{attempt.id}",
    )
    return True
