"""Disputes (chargebacks): the credits a disputed payment bought are frozen while it is open.

Stripe's `charge.dispute.created` and `charge.dispute.closed` arrive through the same signed,
stored-once webhook path as every payment event (webhooks.apply_event), so each is applied
exactly once, in the transaction that stores it.

- created: the dispute is recorded (UNIQUE provider + dispute id) and the credits the disputed
  amount bought, floor(order credits * disputed / paid), never more than the order still gave,
  are held in the ledger: a pending transfer from the customer's account to
  platform:disputes, key dispute:<id>:hold. A hold is what the gateway's own reservations are,
  so the frozen credits stop being spendable at once and `ledger verify` sees them.
- Credits the customer already spent cannot be held without passing the account's limit; the
  hold covers what is still available and the rest is recorded as the dispute's shortfall.
  The dispute itself is always recorded, whatever the balance.
- closed lost: the hold is posted (the credits are taken back, exactly the frozen amount) and
  the order's invoice gets a credit note for the disputed amount. won or warning_closed: the
  hold is voided and the credits are spendable again.
- The hold's expiry is far in the future (FROZEN_UNTIL): the jobs loop's hold expiry only
  expires holds past their expires_at, so it never releases a dispute's credits.
- Before its payment: a dispute event about a payment no settled order has yet is stored with
  the payment's id (outcome unknown_payment) and applied when the order settles, by the
  webhook or by reconcile (apply_early_disputes), as early refund events are.
- Out of order: a closed event for a dispute never seen is applied as created-then-closed in
  one go (lost takes the credits back; won changes nothing), and the late created event then
  finds the dispute recorded and changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session, col

from creditdash.billing import ledger
from creditdash.billing.codes import TransferCode, dispute_hold_key
from creditdash.billing.invoicing.invoices import RefundPaid, issue_credit_note
from creditdash.billing.invoicing.models import Invoice
from creditdash.billing.payments import orders
from creditdash.billing.payments.models import PaymentEvent, PaymentOrder, Refund
from creditdash.billing.payments.reconcile_models import Dispute
from creditdash.core import db, outbox
from creditdash.core.audit import Actor, record
from creditdash.core.errors import InsufficientCredits
from creditdash.core.ids import new_id
from creditdash.core.money import format_credits, format_minor
from creditdash.core.timeutil import utcnow

# Dispute holds never expire by the clock: only the dispute's closing resolves them.
FROZEN_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
CLOSED_STATUSES = ("won", "lost", "warning_closed")

Outcome = tuple[str, PaymentOrder | None, str]


@dataclass(frozen=True)
class DisputeFacts:
    dispute_id: str
    payment_id: str
    amount_minor: int
    currency: str
    reason: str
    status: str


def _facts(obj: dict[str, Any]) -> DisputeFacts | None:
    dispute_id, payment_id, amount = obj.get("id"), obj.get("payment_intent"), obj.get("amount")
    if not isinstance(dispute_id, str) or not isinstance(payment_id, str):
        return None
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        return None
    return DisputeFacts(
        dispute_id=dispute_id[:255],
        payment_id=payment_id,
        amount_minor=amount,
        currency=str(obj.get("currency") or "").upper(),
        reason=str(obj.get("reason") or "")[:80],
        status=str(obj.get("status") or ""),
    )


def _order_of(session: Session, provider: str, payment_id: str) -> PaymentOrder | None:
    return session.execute(
        select(PaymentOrder).where(
            col(PaymentOrder.provider) == provider,
            col(PaymentOrder.provider_payment_id) == payment_id,
        )
    ).scalar_one_or_none()


def credits_due(order: PaymentOrder, amount_minor: int) -> int:
    """What the disputed amount bought: the order's credits scaled by disputed / paid, rounded
    down, and never more than the order still gave (its refunds took some back)."""
    total = order.credits_micros + order.bonus_micros
    scaled = total * min(amount_minor, order.gross_minor) // order.gross_minor
    return max(0, min(scaled, total - order.refunded_credits_micros))


def find_dispute(session: Session, provider: str, dispute_id: str) -> Dispute | None:
    return session.execute(
        select(Dispute).where(
            col(Dispute.provider) == provider, col(Dispute.provider_dispute_id) == dispute_id
        )
    ).scalar_one_or_none()


def dispute_created(
    session: Session, provider: str, event: PaymentEvent, obj: dict[str, Any]
) -> Outcome:
    facts = _facts(obj)
    if facts is None:
        return "ignored", None, "dispute without id, payment_intent or amount"
    order = _order_of(session, provider, facts.payment_id)
    if order is None:
        return _early(event, facts)
    if find_dispute(session, provider, facts.dispute_id) is not None:
        return "already_recorded", order, f"dispute {facts.dispute_id} already recorded"
    dispute = _open(session, provider, order, facts, event)
    detail = f"dispute {facts.dispute_id}: froze {format_credits(dispute.frozen_micros)} credits"
    if dispute.shortfall_micros:
        detail += f" ({format_credits(dispute.shortfall_micros)} already spent)"
    return "dispute_opened", order, detail


def _open(
    session: Session,
    provider: str,
    order: PaymentOrder,
    facts: DisputeFacts,
    event: PaymentEvent,
) -> Dispute:
    """Record the dispute and freeze what it can of the credits it concerns."""
    # The order's row lock: a refund of the same order cannot change what is due meanwhile.
    orders.lock(session, order)
    due = credits_due(order, facts.amount_minor) if facts.currency == order.currency else 0
    dispute = Dispute(
        id=new_id("dsp"),
        provider=provider,
        provider_dispute_id=facts.dispute_id,
        order_id=order.id,
        customer_id=order.customer_id,
        amount_minor=facts.amount_minor,
        currency=facts.currency[:3] or order.currency,
        frozen_micros=0,
        shortfall_micros=due,
        reason=facts.reason,
    )
    session.add(dispute)
    session.flush()
    frozen, hold_id = _freeze(session, order, dispute, due)
    dispute.frozen_micros, dispute.shortfall_micros, dispute.hold_id = frozen, due - frozen, hold_id
    session.add(dispute)
    session.flush()
    actor = Actor(label=f"{provider}:{event.event_id}")
    orders.note(
        session,
        order,
        actor.label,
        f"dispute {facts.dispute_id} opened over "
        f"{format_minor(facts.amount_minor, order.currency)} {facts.currency}; "
        f"{format_credits(frozen)} credits frozen",
    )
    _tell(session, dispute, "dispute.opened", actor)
    return dispute


def _freeze(
    session: Session, order: PaymentOrder, dispute: Dispute, due: int
) -> tuple[int, int | None]:
    """Hold up to `due` of the customer's available credits; (held, hold id)."""
    account = ledger.customer_account_id(session, order.customer_id)
    for _ in range(3):
        available = ledger.get_balance(session, account).available_micros
        amount = max(0, min(due, available))
        if amount == 0:
            return 0, None
        try:
            held = ledger.hold(
                session,
                idempotency_key=dispute_hold_key(dispute.id),
                debit_account_id=account,
                credit_account_id=ledger.platform_account_id(session, ledger.DISPUTES),
                amount_micros=amount,
                code=TransferCode.DISPUTE,
                reference=order.id,
                expires_at=FROZEN_UNTIL,
            )
        except InsufficientCredits:
            continue  # a request spent some meanwhile; the hold wrote nothing, read again
        assert held.id is not None
        return amount, int(held.id)
    return 0, None


def _early(event: PaymentEvent, facts: DisputeFacts) -> Outcome:
    """A dispute about a payment no settled order has yet (its checkout webhook is late, or
    lost until reconcile finds it): kept with the payment's id, and applied by
    apply_early_disputes when that order settles, so the dispute is not lost."""
    event.provider_payment_id = facts.payment_id
    return "unknown_payment", None, f"no settled order for {facts.payment_id} yet"


def apply_early_disputes(session: Session, provider: str, order: PaymentOrder) -> None:
    """Dispute events that arrived before their payment settled, applied in their order."""
    if not order.provider_payment_id:
        return
    early = (
        session.execute(
            select(PaymentEvent)
            .where(
                col(PaymentEvent.provider) == provider,
                col(PaymentEvent.provider_payment_id) == order.provider_payment_id,
                col(PaymentEvent.outcome) == "unknown_payment",
                col(PaymentEvent.event_type).in_(tuple(HANDLERS)),
            )
            .order_by(col(PaymentEvent.id))
        )
        .scalars()
        .all()
    )
    for waiting in early:
        obj = json.loads(waiting.payload_json)["data"]["object"]
        outcome, _, detail = HANDLERS[waiting.event_type](session, provider, waiting, obj)
        waiting.outcome, waiting.order_id, waiting.detail = outcome, order.id, detail[:500]
        session.add(waiting)


def dispute_closed(
    session: Session, provider: str, event: PaymentEvent, obj: dict[str, Any]
) -> Outcome:
    facts = _facts(obj)
    if facts is None:
        return "ignored", None, "dispute without id, payment_intent or amount"
    if facts.status not in CLOSED_STATUSES:
        return "ignored", None, f"dispute status {facts.status}"
    dispute = find_dispute(session, provider, facts.dispute_id)
    if dispute is None:
        # Closed before created reached us: open it now, then close it, in this transaction.
        order = _order_of(session, provider, facts.payment_id)
        if order is None:
            return _early(event, facts)
        dispute = _open(session, provider, order, facts, event)
    order = orders.get_order(session, dispute.order_id)
    if not close(
        session, dispute, status=facts.status, actor=Actor(f"{provider}:{event.event_id}")
    ):
        return "already_closed", order, f"dispute {facts.dispute_id} is {dispute.status}"
    verb = "taken back" if facts.status == "lost" else "released"
    return (
        f"dispute_{facts.status}",
        order,
        f"dispute {facts.dispute_id} {facts.status}: "
        f"{format_credits(dispute.frozen_micros)} credits {verb}",
    )


def close(session: Session, dispute: Dispute, *, status: str, actor: Actor) -> bool:
    """Close an open dispute once (a conditional UPDATE): lost posts the hold and credits the
    invoice, won or warning_closed voids it. False if it was already closed."""
    now = utcnow()
    result = session.execute(
        update(Dispute)
        .where(col(Dispute.id) == dispute.id, col(Dispute.status) == "open")
        .values(status=status, closed_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(dispute)
    if db.rowcount(result) != 1:
        return False
    if dispute.hold_id is not None:
        if status == "lost":
            ledger.post(session, hold_id=dispute.hold_id, amount_micros=dispute.frozen_micros)
        else:
            ledger.void(session, hold_id=dispute.hold_id)
    order = orders.get_order(session, dispute.order_id)
    if status == "lost":
        _credit_note(session, order, dispute)
    orders.note(
        session,
        order,
        actor.label,
        f"dispute {dispute.provider_dispute_id} {status}; "
        f"{format_credits(dispute.frozen_micros)} credits "
        f"{'taken back' if status == 'lost' else 'released'}",
    )
    _tell(session, dispute, "dispute.closed", actor)
    return True


def _credit_note(session: Session, order: PaymentOrder, dispute: Dispute) -> None:
    """The lost amount credited on the order's invoice, within what its notes have not yet
    credited (a refund before the dispute already credited part)."""
    failed = frozenset(
        session.execute(
            select(col(Refund.id)).where(
                col(Refund.order_id) == order.id, col(Refund.status) == "failed"
            )
        ).scalars()
    )
    invoice_id = session.execute(
        select(col(Invoice.id)).where(
            col(Invoice.order_id) == order.id, col(Invoice.kind) == "invoice"
        )
    ).scalar_one_or_none()
    if invoice_id is None:
        return
    credited = sum(
        note.gross_minor
        for note in session.execute(
            select(Invoice).where(
                col(Invoice.credits_invoice_id) == invoice_id, col(Invoice.kind) == "credit_note"
            )
        ).scalars()
        if note.refund_id not in failed
    )
    amount = min(dispute.amount_minor, order.gross_minor - credited)
    if amount <= 0:
        return
    issue_credit_note(
        session,
        RefundPaid(
            refund_id=f"dispute:{dispute.id}",
            order_id=order.id,
            customer_id=order.customer_id,
            amount_minor=amount,
            payment_reference=dispute.provider_dispute_id,
        ),
        failed_refund_ids=failed,
    )


def _tell(session: Session, dispute: Dispute, kind: str, actor: Actor) -> None:
    """The workspace owners' email (an outbox event) and the operator's audit entry."""
    data = describe_dispute(dispute)
    outbox.emit(
        session,
        type=kind,
        customer_id=dispute.customer_id,
        data=data,
        dedupe_key=f"{kind}:{dispute.id}",
    )
    record(
        session,
        actor=actor,
        action=f"payment.{kind.replace('.', '_')}",
        target_type="payment_order",
        target_id=dispute.order_id,
        after=data,
    )


def describe_dispute(dispute: Dispute) -> dict[str, Any]:
    return {
        "dispute_id": dispute.id,
        "provider_dispute_id": dispute.provider_dispute_id,
        "order_id": dispute.order_id,
        "customer_id": dispute.customer_id,
        "amount": format_minor(dispute.amount_minor, dispute.currency),
        "amount_minor": dispute.amount_minor,
        "currency": dispute.currency,
        "credits_frozen": format_credits(dispute.frozen_micros),
        "credits_frozen_micros": dispute.frozen_micros,
        "credits_shortfall_micros": dispute.shortfall_micros,
        "reason": dispute.reason,
        "status": dispute.status,
        "opened_at": dispute.opened_at.isoformat(),
        "closed_at": dispute.closed_at.isoformat() if dispute.closed_at else None,
    }


def list_disputes(
    session: Session, *, status: str | None = None, limit: int = 200
) -> list[Dispute]:
    query = select(Dispute).order_by(col(Dispute.opened_at).desc()).limit(limit)
    if status is not None:
        query = query.where(col(Dispute.status) == status)
    return list(session.execute(query).scalars())


HANDLERS = {
    "charge.dispute.created": dispute_created,
    "charge.dispute.closed": dispute_closed,
}
