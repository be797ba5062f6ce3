"""Charging gateway requests: reserve the worst case, then settle once with the actual price.

reserve() places a hold before anything is sent upstream. settle() posts the actual price
(never more than was held; an excess is charged as a separate transfer if the balance allows,
and otherwise recorded as unbilled) and writes the usage record in the same transaction.
cancel() voids the hold when nothing billable happened, and records the request too.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, insert, select, update
from sqlmodel import Session, col

from creditdash.accounts.models import ApiKey
from creditdash.billing import budget_holds, key_caps, ledger
from creditdash.billing.codes import TransferCode, hold_key, overage_key
from creditdash.billing.models import LedgerAccount, UsageEntry, UsageRecord
from creditdash.core.errors import AlreadyResolved, InsufficientCredits
from creditdash.core.timeutil import utcnow

# The names callers knew these codes by before billing/codes.py: the same members.
USAGE_CODE = TransferCode.USAGE
OVERAGE_CODE = TransferCode.USAGE_OVERAGE


def reserve(
    session: Session,
    *,
    request_id: str,
    account_id: int,
    amount_micros: int,
    ttl: timedelta,
    budget_customer_id: str | None = None,
    key_cap: tuple[str, int] | None = None,
) -> int | None:
    """Hold amount_micros for a request; None for a free request. InsufficientCredits if short.

    With budget_customer_id (a workspace with a hard budget) the hold is also counted in the
    budget, in this transaction: BudgetExceeded if it would pass it (the caller's transaction,
    with the balance hold, is then rolled back). With key_cap (the key's id and its monthly
    spend cap) it is counted against the cap after that: SpendCapReached, likewise."""
    if amount_micros == 0:
        return None
    held = ledger.hold(
        session,
        idempotency_key=hold_key(request_id),
        debit_account_id=account_id,
        credit_account_id=ledger.usage_revenue_account_id(session, account_id),
        amount_micros=amount_micros,
        code=TransferCode.USAGE,
        reference=request_id,
        expires_at=utcnow() + ttl,
    )
    if budget_customer_id is not None and held.id is not None:
        budget_holds.reserve(
            session.connection(),
            customer_id=budget_customer_id,
            hold_id=held.id,
            amount_micros=amount_micros,
        )
    if key_cap is not None and held.id is not None:
        key_caps.reserve(
            session.connection(),
            key_id=key_cap[0],
            cap_micros=key_cap[1],
            hold_id=held.id,
            amount_micros=amount_micros,
        )
    return held.id


def settle(
    session: Session,
    *,
    hold_id: int | None,
    account_id: int,
    price_micros: int,
    record: UsageEntry,
    touch_key: bool = False,
    overage: bool = True,
) -> UsageEntry:
    """Charge price_micros against the hold and store the usage record, in one transaction.

    A price above the hold is charged as a separate overage transfer if the balance allows and
    overage is True; otherwise (or when the balance is short) the excess is recorded as
    unbilled. Callers pass overage=False where a limit admitted the request by its hold (a key's
    spend cap), so no single request can take the key past it.
    """
    held_micros = 0
    if hold_id is not None:
        held = ledger.get_transfer(session, hold_id)
        try:
            ledger.post(
                session, hold_id=hold_id, amount_micros=min(price_micros, held.amount_micros)
            )
            held_micros = held.amount_micros
        except AlreadyResolved:
            # The hold outlived its deadline and was expired: charge the whole price directly.
            held_micros = 0
    excess = max(0, price_micros - held_micros)
    charged = price_micros - excess
    if excess and not overage:
        record.unbilled_micros = excess
    elif excess:
        try:
            ledger.transfer(
                session,
                idempotency_key=overage_key(record.id),
                debit_account_id=account_id,
                credit_account_id=ledger.usage_revenue_account_id(session, account_id),
                amount_micros=excess,
                code=TransferCode.USAGE_OVERAGE,
                reference=record.id,
            )
            charged += excess
        except InsufficientCredits:
            record.unbilled_micros = excess
    record.price_micros = charged
    record.hold_id = hold_id
    return _store(session, record, account_id, touch_key)


def cancel(
    session: Session, *, hold_id: int | None, account_id: int, record: UsageEntry
) -> UsageEntry:
    """Release the hold (nothing is charged) and store the usage record."""
    if hold_id is not None:
        ledger.void(session, hold_id=hold_id)
    record.price_micros = 0
    record.hold_id = hold_id
    return _store(session, record, account_id, touch_key=False)


_usage_table = UsageRecord.__table__  # type: ignore[attr-defined]
_accounts = LedgerAccount.__table__  # type: ignore[attr-defined]
_USAGE_COLUMNS = tuple(c.name for c in _usage_table.columns)
_INSERT_USAGE = insert(_usage_table)
_TOUCH_KEY = (
    update(ApiKey.__table__)  # type: ignore[attr-defined]
    .where(ApiKey.__table__.c.id == bindparam("p_key"))  # type: ignore[attr-defined]
    .values(last_used_at=bindparam("p_now"))
)


def _store(session: Session, record: UsageEntry, account_id: int, touch_key: bool) -> UsageEntry:
    record.balance_after_micros = ledger.get_balance(session, account_id).posted_micros
    connection = session.connection()
    # Core inserts: one usage row per request is the gateway's hottest write.
    connection.execute(_INSERT_USAGE, {name: getattr(record, name) for name in _USAGE_COLUMNS})
    # The month's spend of the workspace's budget row, in the record's transaction.
    budget_holds.count_spend(
        connection,
        customer_id=record.customer_id,
        price_micros=record.price_micros,
        at=record.created_at,
    )
    # And the key's (for its spend cap), after the budget row as on every path.
    key_caps.count_spend(
        connection, key_id=record.api_key_id, price_micros=record.price_micros, at=record.created_at
    )
    if touch_key:
        connection.execute(_TOUCH_KEY, {"p_key": record.api_key_id, "p_now": utcnow()})
    return record


def key_spend_since(session: Session, *, api_key_id: str, since: datetime) -> int:
    total = session.execute(
        select(func.coalesce(func.sum(col(UsageRecord.price_micros)), 0)).where(
            col(UsageRecord.api_key_id) == api_key_id,
            col(UsageRecord.created_at) >= since,
        )
    ).scalar_one()
    return int(total)


def usage_revenue_problems(session: Session) -> list[str]:
    """ledger verify's check of the revenue shards: each holds exactly what the usage records of
    the customers whose account ids fall in it charged (nothing else moves usage revenue)."""
    usage = UsageRecord.__table__  # type: ignore[attr-defined]
    shard = _accounts.c.id % ledger.USAGE_REVENUE_SHARDS
    charged = dict(
        session.execute(
            select(shard, func.sum(usage.c.price_micros))
            .select_from(usage.join(_accounts, _accounts.c.customer_id == usage.c.customer_id))
            .group_by(shard)
        ).all()
    )
    booked = dict(
        session.execute(
            select(_accounts.c.code, _accounts.c.credits_posted - _accounts.c.debits_posted).where(
                _accounts.c.code.in_(ledger.USAGE_REVENUE_CODES)
            )
        ).all()
    )
    problems = []
    for number, code in enumerate(ledger.USAGE_REVENUE_CODES):
        want, have = int(charged.get(number) or 0), int(booked.get(code) or 0)
        if want != have:
            problems.append(f"{code}: holds {have} micros, its customers' usage charged {want}")
    return problems


def month_start(now: datetime | None = None) -> datetime:
    now = now or utcnow()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
