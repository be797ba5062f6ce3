"""Refunds: money back for a paid order, capped by the published policy, once per refund id.

The policy (settings): a refund is possible within refund_window_days of payment, and by default
only for credits of that order the customer still holds, so money is never returned for credits
already used. Credits taken back are proportional to the money returned, cumulatively over the
order's refunds (credits_back = floor(total_credits * refunded / gross)), so a full refund takes
back exactly what the order granted, bonus included, however it was split into parts.

A refund runs as three steps, because the provider is called outside any transaction:
1. reserve: record the refund as pending, raise the order's refunded amount with a conditional
   UPDATE and take the credits back (one transaction);
2. ask the provider to return the money (idempotency key: the refund id);
3. mark the refund succeeded, or on a provider refusal undo step 1 with correcting transfers.
A crash between 1 and 3 leaves a pending refund; running the same refund id again finishes it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlmodel import Session, col

from creditdash.accounts.models import Customer
from creditdash.billing import ledger
from creditdash.billing.codes import (
    TransferCode,
    order_bonus_key,
    order_credit_key,
    refund_key,
    refund_reversal_key,
)
from creditdash.billing.invoicing.invoices import RefundPaid, issue_credit_note
from creditdash.billing.models import Transfer
from creditdash.billing.payments import orders
from creditdash.billing.payments.models import PaymentEvent, PaymentOrder, Refund
from creditdash.billing.payments.providers import (
    PaymentProvider,
    ProviderFailed,
    provider_named,
)
from creditdash.billing.payments.reconcile_models import Dispute
from creditdash.core import db, outbox
from creditdash.core.audit import Actor, record
from creditdash.core.errors import Conflict, IdempotencyConflict, ValidationFailed
from creditdash.core.money import format_credits, format_minor
from creditdash.core.settings import Settings, get_settings
from creditdash.core.timeutil import utcnow

_REFUND_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,120}$")


@dataclass(frozen=True)
class RefundLimit:
    max_minor: int
    currency: str
    window_ends_at: datetime | None
    why: str

    def describe(self) -> dict[str, object]:
        return {
            "max_refund": format_minor(self.max_minor, self.currency),
            "currency": self.currency,
            "window_ends_at": self.window_ends_at.isoformat() if self.window_ends_at else None,
            "why": self.why,
        }


def policy_text(settings: Settings | None = None) -> str:
    """The published refund policy in one sentence, as checkout pages and pricing show it."""
    settings = settings or get_settings()
    used = (
        "including credits already used"
        if settings.refund_consumed_credits
        else "for the credits of that order not yet used"
    )
    return f"Refunds within {settings.refund_window_days} days of payment, {used}."


def _total_credits(order: PaymentOrder) -> int:
    return order.credits_micros + order.bonus_micros


def credits_back_after(order: PaymentOrder, refunded_minor: int) -> int:
    """Credits taken back in total once refunded_minor of the order has been returned."""
    return _total_credits(order) * refunded_minor // order.gross_minor


def credits_for_refund(
    order: PaymentOrder, amount_minor: int, *, refunded_before_minor: int
) -> int:
    """Credits a refund of amount_minor takes back, given the money refunded before it: the
    cumulative take-back after it minus what the order's earlier refunds took. apply_refund
    and preview_refund both use this, so the confirmation shows what the refund will take."""
    return (
        credits_back_after(order, refunded_before_minor + amount_minor)
        - order.refunded_credits_micros
    )


@dataclass(frozen=True)
class RefundPreview:
    """What a refund would do, for a confirmation before it runs (nothing is written)."""

    order_id: str
    customer_name: str
    amount_minor: int
    currency: str
    credits_micros: int  # taken back from the balance (at most what is available)
    unrecovered_micros: int  # the part already spent, when the policy allows refunding it
    limit: RefundLimit


def preview_refund(
    session: Session, order_id: str, *, amount_minor: int, settings: Settings | None = None
) -> RefundPreview:
    """The effect of refunding amount_minor of an order now, refused as refund_order would
    refuse it (a non-positive amount, more than the policy allows)."""
    if amount_minor <= 0:
        raise ValidationFailed("the refund amount must be positive")
    order = orders.get_order(session, order_id)
    limit = refund_limit(session, order, settings=settings)
    _check_within_limit(order, amount_minor, limit)
    credits = credits_for_refund(order, amount_minor, refunded_before_minor=order.refunded_minor)
    account = ledger.customer_account_id(session, order.customer_id)
    available = ledger.get_balance(session, account).available_micros
    taken = max(0, min(credits, available))
    customer = session.get(Customer, order.customer_id)
    return RefundPreview(
        order_id=order.id,
        customer_name=customer.name if customer is not None else order.customer_id,
        amount_minor=amount_minor,
        currency=order.currency,
        credits_micros=taken,
        unrecovered_micros=credits - taken,
        limit=limit,
    )


def _check_within_limit(order: PaymentOrder, amount_minor: int, limit: RefundLimit) -> None:
    if amount_minor > limit.max_minor:
        raise ValidationFailed(
            f"the refund policy allows at most {format_minor(limit.max_minor, order.currency)} "
            f"{order.currency} for order {order.id} now ({limit.why})"
        )


def refund_limit(
    session: Session, order: PaymentOrder, *, settings: Settings | None = None
) -> RefundLimit:
    """How much of this order's money the policy allows to return now, and why."""
    settings = settings or get_settings()
    if order.status not in orders.REFUNDABLE or order.paid_at is None:
        return RefundLimit(0, order.currency, None, f"the order is {order.status}")
    window_ends = order.paid_at + timedelta(days=settings.refund_window_days)
    if _disputed(session, order.id):
        # The card issuer decides this money (billing/payments/disputes.py): a refund on top
        # of a lost dispute would pay it back twice.
        return RefundLimit(0, order.currency, window_ends, "the payment is disputed")
    remaining = order.gross_minor - order.refunded_minor
    if utcnow() > window_ends:
        return RefundLimit(
            0, order.currency, window_ends, f"the {settings.refund_window_days}-day window passed"
        )
    if settings.refund_consumed_credits:
        return RefundLimit(remaining, order.currency, window_ends, "within the refund window")
    # Only credits of this order the customer still holds: the largest amount whose cumulative
    # take-back stays within what was taken back already plus the order's unused credits.
    holdable = order.refunded_credits_micros + unused_credits(session, order)
    # floor(total * (R + a) / gross) <= holdable
    #   <=>  R + a <= ((holdable + 1) * gross - 1) // total
    ceiling = ((holdable + 1) * order.gross_minor - 1) // _total_credits(order)
    allowed = max(0, min(remaining, ceiling - order.refunded_minor))
    why = "unused credits of this order" if allowed < remaining else "within the refund window"
    return RefundLimit(allowed, order.currency, window_ends, why)


def _disputed(session: Session, order_id: str) -> bool:
    return (
        session.execute(
            select(col(Dispute.id)).where(
                col(Dispute.order_id) == order_id, col(Dispute.status).in_(("open", "lost"))
            )
        ).first()
        is not None
    )


def unused_credits(session: Session, order: PaymentOrder) -> int:
    """Credits of this order the customer has not used, with credits used oldest first.

    Spending oldest first means the balance is made of the newest credits: whatever was
    credited after this order (net of refunds of those later orders) is held before any of this
    order's credits. So unused = available - credited after, within what the order granted and
    was not yet taken back. Free credits granted later can never be refunded as this order's.
    """
    account = ledger.customer_account_id(session, order.customer_id)
    available = ledger.get_balance(session, account).available_micros
    t = Transfer
    settled_at = session.execute(
        select(func.max(col(t.id))).where(
            col(t.idempotency_key).in_((order_credit_key(order.id), order_bonus_key(order.id)))
        )
    ).scalar()
    if settled_at is None:
        return 0
    later_orders = select(col(t.reference)).where(
        col(t.code) == TransferCode.TOPUP, col(t.id) > settled_at
    )
    credited_after = session.execute(
        select(func.coalesce(func.sum(col(t.amount_micros)), 0)).where(
            col(t.credit_account_id) == account,
            col(t.kind) == "single",
            col(t.id) > settled_at,
            # This order's own failed-refund reversals restore its credits, not a later lot.
            or_(col(t.code) != TransferCode.REFUND_REVERSAL, col(t.reference) != order.id),
        )
    ).scalar_one()
    taken_from_later = session.execute(
        select(func.coalesce(func.sum(col(t.amount_micros)), 0)).where(
            col(t.debit_account_id) == account,
            col(t.code) == TransferCode.REFUND,
            col(t.reference).in_(later_orders),
        )
    ).scalar_one()
    later_lots = max(0, int(credited_after) - int(taken_from_later))
    left = _total_credits(order) - order.refunded_credits_micros
    return max(0, min(left, available - later_lots))


def _check_refund_id(refund_id: str) -> str:
    refund_id = (refund_id or "").strip()
    if not _REFUND_ID.match(refund_id):
        raise ValidationFailed("a refund id is 1-120 letters, digits or _ . : -")
    return refund_id


def apply_refund(
    session: Session,
    order: PaymentOrder,
    *,
    refund_id: str,
    amount_minor: int,
    actor: Actor,
    reason: str,
    status: str,
    provider_refund_id: str | None = None,
    require_full_take: bool = False,
) -> Refund:
    """Step 1 (or the whole refund when the money has already gone back): raise the order's
    refunded amount, take the credits back as far as the balance allows, store the refund."""
    if amount_minor <= 0:
        raise ValidationFailed("the refund amount must be positive")
    result = session.execute(
        update(PaymentOrder)
        .where(
            col(PaymentOrder.id) == order.id,
            col(PaymentOrder.status).in_(orders.REFUNDABLE),
            col(PaymentOrder.refunded_minor) + amount_minor <= col(PaymentOrder.gross_minor),
        )
        .values(refunded_minor=col(PaymentOrder.refunded_minor) + amount_minor)
        .execution_options(synchronize_session=False)
    )
    if db.rowcount(result) != 1:
        session.refresh(order)
        raise Conflict(
            f"order {order.id} cannot take a refund of "
            f"{format_minor(amount_minor, order.currency)} {order.currency} (status "
            f"{order.status}, refunded {format_minor(order.refunded_minor, order.currency)})"
        )
    session.refresh(order)
    credits = credits_for_refund(
        order, amount_minor, refunded_before_minor=order.refunded_minor - amount_minor
    )
    account = ledger.customer_account_id(session, order.customer_id)
    available = ledger.get_balance(session, account).available_micros
    taken = max(0, min(credits, available))
    if require_full_take and taken < credits:
        # The policy refunds only credits the customer still has; they were spent meanwhile.
        raise ValidationFailed(
            "the customer no longer holds the credits this refund would take back; "
            "ask for the current refund limit"
        )
    if taken:
        ledger.transfer(
            session,
            idempotency_key=refund_key(refund_id),
            debit_account_id=account,
            credit_account_id=ledger.platform_account_id(session, ledger.REFUNDS),
            amount_micros=taken,
            code=TransferCode.REFUND,
            reference=order.id,
            memo=f"refund {refund_id}",
            actor_user_id=actor.user_id,
        )
    # Our UPDATE above holds the order row until commit, so this read-modify-write is safe.
    order.refunded_credits_micros += credits
    session.add(order)
    session.flush()
    orders.follow_refunds(session, order, actor_label=actor.label, note_text=f"refund {refund_id}")
    refund = Refund(
        id=refund_id,
        order_id=order.id,
        provider=order.provider,
        provider_refund_id=provider_refund_id,
        amount_minor=amount_minor,
        currency=order.currency,
        credits_micros=taken,
        unrecovered_micros=credits - taken,
        status=status,
        reason=reason[:500],
        actor_label=actor.label[:200],
        actor_user_id=actor.user_id,
    )
    session.add(refund)
    session.flush()
    if status == "succeeded":
        _issue_credit_note(session, order, refund)
    record(
        session,
        actor=actor,
        action="order.refund",
        target_type="payment_order",
        target_id=order.id,
        after={
            "refund_id": refund_id,
            "amount": format_minor(amount_minor, order.currency),
            "currency": order.currency,
            "credits_taken": format_credits(taken),
            "credits_unrecovered": format_credits(credits - taken),
        },
        reason=reason,
    )
    return refund


def _same_request(refund: Refund, order_id: str, amount_minor: int) -> bool:
    return refund.order_id == order_id and refund.amount_minor == amount_minor


def refund_order(
    order_id: str,
    *,
    amount_minor: int,
    refund_id: str,
    actor: Actor,
    reason: str,
    settings: Settings | None = None,
    provider: PaymentProvider | None = None,
) -> Refund:
    """Refund part or all of a paid order within the policy; repeat-safe by refund_id.

    Running a refund id again returns its result, or finishes it if it is still pending.
    """
    settings = settings or get_settings()
    refund_id = _check_refund_id(refund_id)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("a reason is required for a refund")
    with db.session_scope() as session:
        existing = session.get(Refund, refund_id)
        if existing is not None:
            if not _same_request(existing, order_id, amount_minor):
                raise IdempotencyConflict(f"refund id {refund_id} was used for another refund")
            if existing.status != "pending":
                session.expunge(existing)
                return existing
        else:
            order = orders.get_order(session, order_id)
            # The order's row lock is held from here to commit: two refunds of one order see
            # each other's effect, so together they stay within the policy.
            orders.lock(session, order)
            _check_within_limit(
                order, amount_minor, refund_limit(session, order, settings=settings)
            )
            apply_refund(
                session,
                order,
                refund_id=refund_id,
                amount_minor=amount_minor,
                actor=actor,
                reason=reason,
                status="pending",
                require_full_take=not settings.refund_consumed_credits,
            )
        order = orders.get_order(session, order_id)
        session.expunge(order)
    provider = provider or provider_named(order.provider, settings)
    try:
        provider_refund_id = provider.refund(order, amount_minor=amount_minor, refund_id=refund_id)
    except ProviderFailed as exc:
        if exc.definite:
            with db.session_scope() as session:
                if undo_refund(session, refund_id, actor_label=actor.label, failure=exc.message):
                    reconcile_refunds(session, orders.get_order(session, order_id))
            raise
        # The provider may or may not have returned the money: keep the refund pending (its
        # credits stay taken back) and let a retry with the same refund id find out.
        raise ProviderFailed(
            f"{exc.message}; the refund stays pending: run it again with refund id "
            f"{refund_id} to finish it",
            definite=False,
        ) from None
    return _finish(refund_id, provider_refund_id)


def _finish(refund_id: str, provider_refund_id: str) -> Refund:
    with db.session_scope() as session:
        # Conditional, so two callers finishing the same pending refund document it once.
        finished = session.execute(
            update(Refund)
            .where(col(Refund.id) == refund_id, col(Refund.status) == "pending")
            .values(status="succeeded", provider_refund_id=provider_refund_id, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        refund = session.get(Refund, refund_id)
        assert refund is not None
        session.refresh(refund)
        if db.rowcount(finished) == 1:
            order = orders.get_order(session, refund.order_id)
            # Under the order's lock, so concurrent refunds split the tax over their notes
            # from each other's committed notes.
            orders.lock(session, order)
            _issue_credit_note(session, order, refund)
        session.expunge(refund)
    return refund


def _issue_credit_note(session: Session, order: PaymentOrder, refund: Refund) -> None:
    """The credit note of a succeeded refund. The caller holds the order's row, so the order's
    failed refunds (whose notes no longer count as money returned) cannot change meanwhile."""
    failed = session.execute(
        select(col(Refund.id)).where(
            col(Refund.order_id) == order.id, col(Refund.status) == "failed"
        )
    ).scalars()
    issue_credit_note(
        session,
        RefundPaid(
            refund_id=refund.id,
            order_id=order.id,
            customer_id=order.customer_id,
            amount_minor=refund.amount_minor,
            payment_reference=refund.provider_refund_id or refund.id,
        ),
        failed_refund_ids=frozenset(failed),
    )
    outbox.emit(
        session,
        type="refund.succeeded",
        customer_id=order.customer_id,
        data={
            "refund_id": refund.id,
            "order_id": order.id,
            "amount_minor": refund.amount_minor,
            "currency": refund.currency,
            "credits_micros": refund.credits_micros,
        },
        dedupe_key=f"refund.succeeded:{refund.id}",
    )


def undo_refund(session: Session, refund_id: str, *, actor_label: str, failure: str) -> bool:
    """The provider refused (or later failed) a refund: give the credits back, lower the
    refunded amount again, mark it failed. False if it was already failed.

    A credit note already issued for it stays as issued (documents are never changed or
    deleted); the order's history records the failure.
    """
    refund = session.get(Refund, refund_id)
    if refund is None:
        return False
    result = session.execute(
        update(Refund)
        .where(col(Refund.id) == refund_id, col(Refund.status).in_(("pending", "succeeded")))
        .values(status="failed", failure=failure[:500], updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if db.rowcount(result) != 1:
        return False  # already failed
    order = orders.get_order(session, refund.order_id)
    orders.lock(session, order)
    if refund.credits_micros:
        ledger.transfer(
            session,
            idempotency_key=refund_reversal_key(refund_id),
            debit_account_id=ledger.platform_account_id(session, ledger.REFUNDS),
            credit_account_id=ledger.customer_account_id(session, order.customer_id),
            amount_micros=refund.credits_micros,
            code=TransferCode.REFUND_REVERSAL,
            reference=order.id,
            memo=f"refund {refund_id} failed at the provider",
        )
    order.refunded_minor -= refund.amount_minor
    order.refunded_credits_micros -= refund.credits_micros + refund.unrecovered_micros
    session.add(order)
    session.flush()
    orders.follow_refunds(
        session, order, actor_label=actor_label, note_text=f"refund {refund_id} failed"
    )
    return True


# ------------------------------------------------------------- catching up with the provider
# Refunds made at the provider (its dashboard), refund events that arrive before their payment,
# and money a failed refund of ours did return after all: applied here, through apply_refund,
# for the webhooks (payments/webhooks.py) and for refund_order's failure path alike.

# What applying an event did: outcome, the order it concerned, a detail line.
Outcome = tuple[str, PaymentOrder | None, str]


def catch_up_refund(
    session: Session, order: PaymentOrder, charge: dict[str, Any], event: PaymentEvent
) -> Outcome:
    """A refund made at the provider (its dashboard, or ours already recorded): apply the part
    of amount_refunded this order does not know about yet."""
    total = int(charge["amount_refunded"])
    if str(charge.get("currency") or "").upper() != order.currency:
        return "amount_mismatch", order, "refund currency differs from the order"
    # Under the order's row lock, so two refund events cannot both count the same money.
    orders.lock(session, order)
    missing = min(total, order.gross_minor) - order.refunded_minor
    if missing <= 0:
        return "already_applied", order, "refund already recorded"
    refund_id = f"{order.provider}:{charge.get('id')}:{total}"
    if order.status not in orders.REFUNDABLE or session.get(Refund, refund_id) is not None:
        return "ignored", order, f"order is {order.status}"
    apply_refund(
        session,
        order,
        refund_id=refund_id,
        amount_minor=missing,
        actor=Actor(label=f"{order.provider}:{event.event_id}"),
        reason="refunded at the payment provider",
        status="succeeded",
        provider_refund_id=refund_id,
    )
    return "refunded", order, format_minor(missing, order.currency) + " " + order.currency


def reconcile_refunds(session: Session, order: PaymentOrder) -> None:
    """Apply what the provider's latest refund event says beyond what the order records: after
    one of our refunds failed, money the provider did return (its dashboard) shows up here."""
    if not order.provider_payment_id:
        return
    latest = (
        session.execute(
            select(PaymentEvent)
            .where(
                col(PaymentEvent.provider) == order.provider,
                col(PaymentEvent.provider_payment_id) == order.provider_payment_id,
                col(PaymentEvent.event_type) == "charge.refunded",
            )
            .order_by(col(PaymentEvent.id).desc())
        )
        .scalars()
        .all()
    )
    if not latest:
        return
    newest = max(
        latest, key=lambda e: json.loads(e.payload_json)["data"]["object"]["amount_refunded"]
    )
    charge = json.loads(newest.payload_json)["data"]["object"]
    catch_up_refund(session, order, charge, newest)


def apply_early_refunds(session: Session, provider: str, order: PaymentOrder) -> None:
    """Refund events that arrived before the payment event are applied once it is settled."""
    if not order.provider_payment_id:
        return
    early = (
        session.execute(
            select(PaymentEvent)
            .where(
                col(PaymentEvent.provider) == provider,
                col(PaymentEvent.provider_payment_id) == order.provider_payment_id,
                col(PaymentEvent.outcome) == "unknown_order",
            )
            .order_by(col(PaymentEvent.id))
        )
        .scalars()
        .all()
    )
    for waiting in early:
        charge = json.loads(waiting.payload_json)["data"]["object"]
        outcome, _, detail = catch_up_refund(session, order, charge, waiting)
        waiting.outcome, waiting.order_id, waiting.detail = outcome, order.id, detail[:500]
        session.add(waiting)
