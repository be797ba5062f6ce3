"""Payment orders: the final amount fixed before payment, a state machine, and settlement.

    awaiting_payment -> paid -> partially_refunded -> refunded
    awaiting_payment -> cancelled | expired

Every status change is one conditional UPDATE naming the statuses it may leave, checked by its
row count, with a history row in the same transaction. Settlement credits the customer with
ledger transfers keyed by the order id, so an order is credited at most once however many
events or approvals describe its payment.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from creditdash.accounts.customers import get_customer
from creditdash.accounts.models import Customer
from creditdash.billing import ledger
from creditdash.billing.codes import TransferCode, order_bonus_key, order_credit_key
from creditdash.billing.invoicing import profiles
from creditdash.billing.invoicing import tax as taxes
from creditdash.billing.invoicing.invoices import Sale, issue_invoice
from creditdash.billing.payments.models import CreditPackage, OrderEvent, PaymentOrder
from creditdash.billing.payments.providers import checkout_provider_name
from creditdash.core import db, outbox
from creditdash.core.audit import Actor, record
from creditdash.core.errors import Conflict, NotFound, ValidationFailed
from creditdash.core.ids import new_id
from creditdash.core.money import MAX_MICROS, format_credits, format_minor
from creditdash.core.settings import Settings, get_settings
from creditdash.core.timeutil import utcnow

# Far below the ledger's per-transfer bound (MAX_MICROS) and Stripe's amount limit.
MAX_ORDER_MICROS = MAX_MICROS // 10
MAX_ORDER_MINOR = 99_999_999
# Statuses a paying event may settle from. A payment the provider really took wins over our
# own expiry or a cancellation: the money arrived, so the credits are due.
SETTLE_FROM_EVENT = ("awaiting_payment", "expired", "cancelled")
# A bank transfer that arrives after the order's window still settles it on approval.
SETTLE_FROM_APPROVAL = ("awaiting_payment", "expired")
REFUNDABLE = ("paid", "partially_refunded")
_REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _transfer_reference() -> str:
    """What a customer writes on a bank transfer: short, unambiguous, hard to guess."""
    body = "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(10))
    return f"CD-{body[:5]}-{body[5:]}"


def create_order(
    session: Session,
    *,
    customer_id: str,
    package: CreditPackage,
    quantity: int = 1,
    actor: Actor,
    manual: bool = False,
    accept_terms: bool = False,
    contract_net_minor: int | None = None,
    contract_credits_micros: int | None = None,
    settings: Settings | None = None,
) -> PaymentOrder:
    """Open an order awaiting payment. Checkout orders get their payment page separately
    (checkout.open_checkout), because that calls the provider outside any transaction."""
    settings = settings or get_settings()
    customer = get_customer(session, customer_id)
    if not package.active:
        raise ValidationFailed(f"package {package.name} is not on sale")
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise ValidationFailed("quantity must be a whole number")
    if not package.min_quantity <= quantity <= package.max_quantity:
        raise ValidationFailed(
            f"quantity for {package.name} must be between {package.min_quantity} "
            f"and {package.max_quantity}"
        )
    net_minor = package.unit_price_minor * quantity
    credits_micros = package.credits_micros * quantity
    if contract_net_minor is not None or contract_credits_micros is not None:
        if package.kind != "custom":
            raise ValidationFailed("contract amounts are only for the Custom package")
        if contract_net_minor is not None:
            if contract_net_minor <= 0:
                raise ValidationFailed("the contract amount must be positive")
            net_minor = contract_net_minor
        if contract_credits_micros is not None:
            if contract_credits_micros <= 0:
                raise ValidationFailed("the contract credits must be positive")
            credits_micros = contract_credits_micros
    _check_bounds(net_minor, credits_micros + package.bonus_micros * quantity)
    manual = manual or package.manual_only
    now = utcnow()
    priced = _price(session, customer, net_minor, now.date())
    order = PaymentOrder(
        id=new_id("ord"),
        customer_id=customer.id,
        package_id=package.id,
        package_name=package.name,
        quantity=quantity,
        credits_micros=credits_micros,
        bonus_micros=package.bonus_micros * quantity,
        currency=package.currency,
        net_minor=net_minor,
        tax_minor=priced.tax_minor,
        gross_minor=net_minor + priced.tax_minor,
        tax_scheme=priced.decision.scheme,
        tax_snapshot_json=priced.decision.snapshot_json(net_minor),
        billing_profile_json=json.dumps(priced.buyer, sort_keys=True),
        method="manual" if manual else "checkout",
        provider="manual" if manual else checkout_provider_name(settings),
        transfer_reference=_transfer_reference() if manual else None,
        terms_version=settings.terms_version,
        terms_accepted_at=now if accept_terms else None,
        created_by_user_id=actor.user_id,
        created_by_label=actor.label,
        created_at=now,
        updated_at=now,
        expires_at=now
        + (
            timedelta(days=settings.manual_order_expiry_days)
            if manual
            else timedelta(seconds=settings.checkout_expiry_s)
        ),
    )
    session.add(order)
    session.flush()
    _history(session, order.id, None, "awaiting_payment", actor.label, "order opened")
    record(
        session,
        actor=actor,
        action="order.create",
        target_type="payment_order",
        target_id=order.id,
        after={
            "customer_id": customer.id,
            "package": package.name,
            "quantity": quantity,
            "gross": format_minor(order.gross_minor, order.currency),
            "currency": order.currency,
            "method": order.method,
        },
    )
    return order


@dataclass(frozen=True)
class Priced:
    decision: taxes.TaxDecision
    tax_minor: int
    buyer: dict[str, object]


def _price(session: Session, customer: Customer, net_minor: int, day: date) -> Priced:
    """The tax on net_minor for this customer today, and the buyer snapshot it rests on.

    Frozen on the order when it opens: later rate or profile changes never alter what the
    customer agreed to pay, nor the invoice copied from it."""
    seller = profiles.get_seller(session)
    profile = profiles.get_billing_profile(session, customer.id)
    decision = taxes.decide(
        session,
        seller=profiles.seller_facts(seller),
        buyer=profiles.buyer_facts(profile, seller),
        on=day,
    )
    buyer = profiles.buyer_snapshot(
        profile,
        customer_name=customer.name,
        customer_email=customer.email,
        tax_country=seller.country,
    )
    return Priced(decision, decision.amount_minor(net_minor), buyer)


@dataclass(frozen=True)
class Quote:
    package: str
    quantity: int
    currency: str
    net_minor: int
    tax_minor: int
    credits_micros: int
    bonus_micros: int
    tax_scheme: str
    tax_name: str
    rate_bp: int
    wording: str

    @property
    def gross_minor(self) -> int:
        return self.net_minor + self.tax_minor


def quote(session: Session, *, customer_id: str, package: CreditPackage, quantity: int) -> Quote:
    """What an order for this package would cost this customer now, tax included; the same
    rules create_order applies, without opening anything."""
    customer = get_customer(session, customer_id)
    if not package.min_quantity <= quantity <= package.max_quantity:
        raise ValidationFailed(
            f"quantity for {package.name} must be between {package.min_quantity} "
            f"and {package.max_quantity}"
        )
    net_minor = package.unit_price_minor * quantity
    priced = _price(session, customer, net_minor, utcnow().date())
    return Quote(
        package=package.name,
        quantity=quantity,
        currency=package.currency,
        net_minor=net_minor,
        tax_minor=priced.tax_minor,
        credits_micros=package.credits_micros * quantity,
        bonus_micros=package.bonus_micros * quantity,
        tax_scheme=priced.decision.scheme,
        tax_name=priced.decision.tax_name,
        rate_bp=priced.decision.rate_bp,
        wording=priced.decision.wording,
    )


def _check_bounds(net_minor: int, total_credits_micros: int) -> None:
    """Refuse orders whose amounts the ledger or a payment provider could never take, so no
    paid order can fail to settle."""
    if net_minor > MAX_ORDER_MINOR:
        raise ValidationFailed("the order amount is too large for one payment")
    if total_credits_micros > MAX_ORDER_MICROS:
        raise ValidationFailed("the order grants more credits than one order may")


def get_order(session: Session, order_id: str, *, customer_id: str | None = None) -> PaymentOrder:
    """An order by id; with customer_id, only that customer's (another's is simply not found)."""
    query = select(PaymentOrder).where(col(PaymentOrder.id) == (order_id or "").strip())
    if customer_id is not None:
        query = query.where(col(PaymentOrder.customer_id) == customer_id)
    order = session.exec(query).first()
    if order is None:
        raise NotFound(f"no order {order_id!r}")
    return order


def list_orders(
    session: Session, *, customer_id: str | None = None, status: str | None = None, limit: int = 200
) -> list[PaymentOrder]:
    query = select(PaymentOrder).order_by(col(PaymentOrder.created_at).desc()).limit(limit)
    if customer_id is not None:
        query = query.where(col(PaymentOrder.customer_id) == customer_id)
    if status is not None:
        query = query.where(col(PaymentOrder.status) == status)
    return list(session.exec(query))


def order_history(session: Session, order_id: str) -> list[OrderEvent]:
    return list(
        session.exec(
            select(OrderEvent)
            .where(col(OrderEvent.order_id) == order_id)
            .order_by(col(OrderEvent.id))
        )
    )


def describe_order(order: PaymentOrder) -> dict[str, object]:
    """The order as docs/contract.md shapes it; `credits` is everything the order grants."""
    return {
        "order_id": order.id,
        "status": order.status,
        "customer_id": order.customer_id,
        "package": order.package_name,
        "quantity": order.quantity,
        "credits": format_credits(order.credits_micros + order.bonus_micros),
        "bonus_credits": format_credits(order.bonus_micros),
        "net": format_minor(order.net_minor, order.currency),
        "tax": format_minor(order.tax_minor, order.currency),
        "gross": format_minor(order.gross_minor, order.currency),
        "currency": order.currency,
        "tax_scheme": order.tax_scheme,
        "method": order.method,
        "provider": order.provider,
        "checkout_session_id": order.checkout_session_id,
        "checkout_url": order.checkout_url,
        "transfer_reference": order.transfer_reference,
        "payment_reference": order.payment_reference,
        "refunded": format_minor(order.refunded_minor, order.currency),
        "terms_version": order.terms_version,
        "terms_accepted_at": _iso(order.terms_accepted_at),
        "created_at": _iso(order.created_at),
        "expires_at": _iso(order.expires_at),
        "paid_at": _iso(order.paid_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _history(
    session: Session,
    order_id: str,
    from_status: str | None,
    to_status: str,
    actor_label: str,
    note: str = "",
) -> None:
    session.add(
        OrderEvent(
            order_id=order_id,
            from_status=from_status,
            to_status=to_status,
            actor_label=actor_label[:200],
            note=note[:500],
        )
    )


def note(session: Session, order: PaymentOrder, actor_label: str, text: str) -> None:
    """A history entry that changes nothing (a mismatched payment, a duplicate, ...)."""
    _history(session, order.id, order.status, order.status, actor_label, text)


def lock(session: Session, order: PaymentOrder) -> None:
    """Take the order's row lock for the rest of the transaction and reload it.

    A no-op UPDATE works on both databases (SQLite has no SELECT ... FOR UPDATE and already
    serializes writers); afterwards a read-check-write on the order cannot race another writer.
    """
    session.execute(
        update(PaymentOrder)
        .where(col(PaymentOrder.id) == order.id)
        .values(updated_at=col(PaymentOrder.updated_at))
        .execution_options(synchronize_session=False)
    )
    session.refresh(order)


def transition(
    session: Session,
    order: PaymentOrder,
    *,
    to_status: str,
    from_statuses: tuple[str, ...],
    actor_label: str,
    note_text: str = "",
    **values: object,
) -> bool:
    """Move the order if (and only if) it is still in one of from_statuses; False otherwise."""
    lock(session, order)
    now = utcnow()
    result = session.execute(
        update(PaymentOrder)
        .where(col(PaymentOrder.id) == order.id, col(PaymentOrder.status).in_(from_statuses))
        .values(status=to_status, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    if db.rowcount(result) != 1:
        session.refresh(order)
        return False
    previous = order.status
    session.refresh(order)
    _history(session, order.id, previous, to_status, actor_label, note_text)
    return True


def settle(
    session: Session,
    order: PaymentOrder,
    *,
    actor_label: str,
    from_statuses: tuple[str, ...],
    note_text: str,
    **values: object,
) -> bool:
    """Mark the order paid, credit its credits (and bonus) and issue its invoice, once;
    False if it was already settled."""
    if not transition(
        session,
        order,
        to_status="paid",
        from_statuses=from_statuses,
        actor_label=actor_label,
        note_text=note_text,
        paid_at=utcnow(),
        **values,
    ):
        return False
    customer = ledger.customer_account_id(session, order.customer_id)
    ledger.transfer(
        session,
        idempotency_key=order_credit_key(order.id),
        debit_account_id=ledger.platform_account_id(session, ledger.PAYMENTS_CLEARING),
        credit_account_id=customer,
        amount_micros=order.credits_micros,
        code=TransferCode.TOPUP,
        reference=order.id,
        memo=f"{order.package_name} x{order.quantity}",
    )
    if order.bonus_micros:
        ledger.transfer(
            session,
            idempotency_key=order_bonus_key(order.id),
            debit_account_id=ledger.platform_account_id(session, ledger.PROMOTIONS),
            credit_account_id=customer,
            amount_micros=order.bonus_micros,
            code=TransferCode.TOPUP_BONUS,
            reference=order.id,
            memo=f"bonus for {order.package_name} x{order.quantity}",
        )
    issued = issue_invoice(session, sale_of(order))
    outbox.emit(
        session,
        type="payment.succeeded",
        customer_id=order.customer_id,
        data={
            "order_id": order.id,
            "package": order.package_name,
            "quantity": order.quantity,
            "credits_micros": order.credits_micros + order.bonus_micros,
            "amount_minor": order.gross_minor,
            "currency": order.currency,
            "provider": order.provider,
            "invoice_number": issued.invoice.number,
        },
        dedupe_key=f"payment.succeeded:{order.id}",
    )
    return True


def sale_of(order: PaymentOrder) -> Sale:
    """The order as its invoice copies it."""
    return Sale(
        order_id=order.id,
        customer_id=order.customer_id,
        package_name=order.package_name,
        quantity=order.quantity,
        credits_micros=order.credits_micros + order.bonus_micros,
        currency=order.currency,
        net_minor=order.net_minor,
        tax_minor=order.tax_minor,
        gross_minor=order.gross_minor,
        tax_scheme=order.tax_scheme,
        tax_snapshot_json=order.tax_snapshot_json or "{}",
        buyer_json=order.billing_profile_json or "{}",
        payment_reference=_payment_reference(order),
    )


def _payment_reference(order: PaymentOrder) -> str:
    """What names the order's payment to the buyer: the admin's record of a manual payment, the
    provider's payment, the bank transfer reference, the checkout session, else the order."""
    return (
        order.payment_reference
        or order.provider_payment_id
        or order.transfer_reference
        or order.checkout_session_id
        or order.id
    )


def follow_refunds(
    session: Session, order: PaymentOrder, *, actor_label: str, note_text: str
) -> None:
    """Set paid / partially_refunded / refunded from the refunded amount (the caller holds the
    order row), with a history entry either way."""
    target = (
        "paid"
        if order.refunded_minor == 0
        else "refunded"
        if order.refunded_minor == order.gross_minor
        else "partially_refunded"
    )
    if target == order.status:
        note(session, order, actor_label, note_text)
        return
    moved = transition(
        session,
        order,
        to_status=target,
        from_statuses=(*REFUNDABLE, "refunded"),
        actor_label=actor_label,
        note_text=note_text,
    )
    assert moved, "the caller holds the order row"


def accept_terms(session: Session, order: PaymentOrder) -> None:
    """Record that the customer accepted the published terms (the version on the order)."""
    if order.terms_accepted_at is None:
        order.terms_accepted_at = utcnow()
        session.add(order)


def cancel_order(session: Session, order: PaymentOrder, *, actor: Actor, reason: str) -> None:
    """Withdraw an order that is still awaiting payment."""
    if not transition(
        session,
        order,
        to_status="cancelled",
        from_statuses=("awaiting_payment",),
        actor_label=actor.label,
        note_text=reason or "cancelled",
    ):
        raise Conflict(f"order {order.id} is {order.status} and cannot be cancelled")
    record(
        session,
        actor=actor,
        action="order.cancel",
        target_type="payment_order",
        target_id=order.id,
        before={"status": "awaiting_payment"},
        after={"status": "cancelled"},
        reason=reason,
    )


def expire_stale_orders(session: Session, *, now: datetime | None = None, limit: int = 200) -> int:
    """Mark orders whose payment window has passed as expired. A payment that still arrives
    for one settles it anyway (SETTLE_FROM_EVENT)."""
    now = now or utcnow()
    stale = session.exec(
        select(PaymentOrder)
        .where(
            col(PaymentOrder.status) == "awaiting_payment",
            col(PaymentOrder.expires_at) < now,
        )
        .limit(limit)
    ).all()
    expired = 0
    for order in stale:
        if transition(
            session,
            order,
            to_status="expired",
            from_statuses=("awaiting_payment",),
            actor_label="system",
            note_text="payment window passed",
        ):
            expired += 1
    return expired
