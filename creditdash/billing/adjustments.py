"""Manual credit grants and debits by operators: audited ledger transfers."""

from __future__ import annotations

from sqlmodel import Session

from creditdash.accounts.audit import Actor, record
from creditdash.billing import ledger
from creditdash.billing.models import TransferRow
from creditdash.billing.money import format_credits
from creditdash.errors import ValidationFailed


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
    reason = _check_reason(reason)
    account_id = ledger.customer_account_id(session, customer_id)
    moved, applied = ledger.apply_transfer(
        session,
        idempotency_key=idempotency_key,
        debit_account_id=ledger.platform_account_id(session, ledger.ADJUSTMENTS),
        credit_account_id=account_id,
        amount_micros=amount_micros,
        code="grant",
        memo=reason,
        actor_user_id=actor.user_id,
    )
    if applied:
        _audit(session, actor, "credits.grant", customer_id, account_id, moved, +amount_micros)
    return moved


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
    reason = _check_reason(reason)
    account_id = ledger.customer_account_id(session, customer_id)
    moved, applied = ledger.apply_transfer(
        session,
        idempotency_key=idempotency_key,
        debit_account_id=account_id,
        credit_account_id=ledger.platform_account_id(session, ledger.ADJUSTMENTS),
        amount_micros=amount_micros,
        code="debit_adjustment",
        memo=reason,
        actor_user_id=actor.user_id,
    )
    if applied:
        _audit(session, actor, "credits.debit", customer_id, account_id, moved, -amount_micros)
    return moved


def _audit(
    session: Session,
    actor: Actor,
    action: str,
    customer_id: str,
    account_id: int,
    moved: TransferRow,
    change_micros: int,
) -> None:
    # Our UPDATE holds the account row until commit, so this read is the balance right after
    # the transfer, and before = after - change exactly.
    after = ledger.get_balance(session, account_id).posted_micros
    record(
        session,
        actor=actor,
        action=action,
        target_type="customer",
        target_id=customer_id,
        before={"balance": format_credits(after - change_micros)},
        after={"balance": format_credits(after), "transfer_id": moved.id},
        reason=moved.memo,
    )
