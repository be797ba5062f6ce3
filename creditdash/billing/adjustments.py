"""Manual credit grants and debits by operators: audited ledger transfers."""

from __future__ import annotations

from sqlmodel import Session

from creditdash.billing import ledger
from creditdash.billing.codes import TransferCode
from creditdash.billing.models import TransferRow
from creditdash.core.audit import Actor, record
from creditdash.core.errors import ValidationFailed
from creditdash.core.money import format_credits


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason or len(reason) > 500:
        raise ValidationFailed("a reason of 1-500 characters is required")
    return reason


def grant_credits(
    session: Session,
    *,
    customer_id: str,
    amount_micros: int,
    reason: str,
    actor: Actor,
    idempotency_key: str,
) -> TransferRow:
    """Give a customer credits from the adjustments account, with an audit entry."""
    return _adjust(session, customer_id, +1, amount_micros, reason, actor, idempotency_key)


def debit_credits(
    session: Session,
    *,
    customer_id: str,
    amount_micros: int,
    reason: str,
    actor: Actor,
    idempotency_key: str,
) -> TransferRow:
    """Take credits back (a correction); refused if it would pass the customer's limit."""
    return _adjust(session, customer_id, -1, amount_micros, reason, actor, idempotency_key)


def _adjust(
    session: Session,
    customer_id: str,
    direction: int,
    amount_micros: int,
    reason: str,
    actor: Actor,
    idempotency_key: str,
) -> TransferRow:
    reason = _check_reason(reason)
    customer = ledger.customer_account_id(session, customer_id)
    adjustments = ledger.platform_account_id(session, ledger.ADJUSTMENTS)
    moved = ledger.transfer(
        session,
        idempotency_key=idempotency_key,
        debit_account_id=adjustments if direction > 0 else customer,
        credit_account_id=customer if direction > 0 else adjustments,
        amount_micros=amount_micros,
        code=TransferCode.GRANT if direction > 0 else TransferCode.DEBIT_ADJUSTMENT,
        memo=reason,
        actor_user_id=actor.user_id,
    )
    if moved.replayed:
        return moved  # a repeat moved nothing and is not a new action
    # Our UPDATE holds the account row until commit, so this read is the balance right after
    # the transfer, and before = after - change exactly.
    after = ledger.get_balance(session, customer).posted_micros
    record(
        session,
        actor=actor,
        action="credits.grant" if direction > 0 else "credits.debit",
        target_type="customer",
        target_id=customer_id,
        before={"balance": format_credits(after - direction * amount_micros)},
        after={"balance": format_credits(after), "transfer_id": moved.id},
        reason=moved.memo,
    )
    return moved
