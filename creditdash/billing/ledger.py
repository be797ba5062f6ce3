"""The double-entry ledger: accounts, transfers, holds.

Rules (docs/design.md "Money and the ledger"):
- Every balance change is a conditional UPDATE whose row count is checked; nothing is read,
  checked in Python and written back. The customer's spending limit lives in the WHERE clause
  (and again in a CHECK constraint), so concurrent holds can never overspend.
- Transfers are immutable. A hold is a "pending" transfer; exactly one "post", "void" or
  "expire" transfer resolves it, enforced by UNIQUE(pending_id).
- Each function runs inside the caller's transaction, in a SAVEPOINT, so a refusal leaves the
  caller's other writes untouched and writes nothing of its own.
- The idempotency key makes a repeat harmless: the same key with the same fields returns the
  first transfer; with different fields it raises IdempotencyConflict and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from creditdash.billing import budget_holds, key_caps
from creditdash.billing.codes import RESERVED_KEY_PREFIX, resolve_key
from creditdash.billing.models import LedgerAccount, Transfer, TransferRow
from creditdash.core.db import rowcount
from creditdash.core.errors import (
    AlreadyResolved,
    IdempotencyConflict,
    InsufficientCredits,
    NotFound,
    ValidationFailed,
)
from creditdash.core.money import MAX_MICROS
from creditdash.core.timeutil import utcnow

# Platform accounts: the other side of every customer entry.
PAYMENTS_CLEARING = "platform:payments_clearing"
USAGE_REVENUE = "platform:usage_revenue"
PROMOTIONS = "platform:promotions"
REFUNDS = "platform:refunds"
ADJUSTMENTS = "platform:adjustments"
# The other side of a disputed payment's frozen credits (billing/payments/disputes.py).
DISPUTES = "platform:disputes"
PLATFORM_ACCOUNTS = (PAYMENTS_CLEARING, USAGE_REVENUE, PROMOTIONS, REFUNDS, ADJUSTMENTS, DISPUTES)

# Usage revenue is one account in 16 shards, and a customer's charges always credit the shard of
# its own account id (usage_revenue_code). Were it one row, every metered request of every
# customer would update it, and on PostgreSQL each request's commit would wait for the one
# before it to release that row's lock: all traffic in one queue. Sharded, a request locks only
# its customer's account and a revenue row shared with a sixteenth of the other customers.
# Shard 0 keeps the account's original code; verify() checks the shards together.
USAGE_REVENUE_SHARDS = 16


def usage_revenue_code(shard: int) -> str:
    """The code of one shard of the usage revenue account."""
    if not 0 <= shard < USAGE_REVENUE_SHARDS:
        raise ValueError(f"no usage revenue shard {shard}")
    return USAGE_REVENUE if shard == 0 else f"{USAGE_REVENUE}:{shard:02d}"


USAGE_REVENUE_CODES = tuple(usage_revenue_code(shard) for shard in range(USAGE_REVENUE_SHARDS))

MAX_KEY_CHARS = 200

# Core tables: the ledger's statements are written against columns, not ORM attributes.
_accounts = LedgerAccount.__table__  # type: ignore[attr-defined]
_transfers = Transfer.__table__  # type: ignore[attr-defined]
_a = _accounts.c
_t = _transfers.c


# The statements of the hot path, built once: SQLAlchemy caches their compiled form, and they
# run on the session's Core connection without the ORM's unit-of-work in between.
def _debit(column: Any) -> Any:
    # The limit check and the write are one statement: concurrent holds serialize on the row
    # and each re-evaluates the WHERE clause against the committed balance.
    return (
        update(_accounts)
        .where(
            _a.id == bindparam("p_account"),
            or_(
                _a.enforce_limit.is_(False),
                _a.credits_posted - _a.debits_posted - _a.debits_pending - bindparam("p_amount")
                >= -_a.credit_limit_micros,
            ),
        )
        .values({column: column + bindparam("p_amount")})
    )


def _credit(column: Any) -> Any:
    return (
        update(_accounts)
        .where(_a.id == bindparam("p_account"))
        .values({column: column + bindparam("p_amount")})
    )


def _release(pending: Any, posted: Any) -> Any:
    return (
        update(_accounts)
        .where(_a.id == bindparam("p_account"), pending >= bindparam("p_held"))
        .values({pending: pending - bindparam("p_held"), posted: posted + bindparam("p_posted")})
    )


_DEBIT = {True: _debit(_a.debits_pending), False: _debit(_a.debits_posted)}
_CREDIT = {True: _credit(_a.credits_pending), False: _credit(_a.credits_posted)}
_RELEASE_DEBIT = _release(_a.debits_pending, _a.debits_posted)
_RELEASE_CREDIT = _release(_a.credits_pending, _a.credits_posted)
_INSERT_TRANSFER = insert(_transfers).returning(_t.id)
_TRANSFER_BY_KEY = select(_transfers).where(_t.idempotency_key == bindparam("p_key"))
_TRANSFER_BY_ID = select(_transfers).where(_t.id == bindparam("p_id"))
_RESOLUTION_OF = select(_transfers).where(_t.pending_id == bindparam("p_id"))
_BALANCE = select(
    _a.credits_posted - _a.debits_posted, _a.debits_pending, _a.credit_limit_micros
).where(_a.id == bindparam("p_account"))
_ACCOUNT_EXISTS = select(_a.id).where(_a.id == bindparam("p_account"))
_ACCOUNT_BY_CODE = select(_a.id).where(_a.code == bindparam("p_code"))
_TRANSFER_COLUMNS = tuple(c.name for c in _transfers.columns if c.name != "id")

DEFAULT_HOLD_TTL = timedelta(minutes=15)


@dataclass(frozen=True)
class Balance:
    """A customer's money in micros. available = posted - held."""

    posted_micros: int
    held_micros: int
    credit_limit_micros: int

    @property
    def available_micros(self) -> int:
        return self.posted_micros - self.held_micros


# ---------------------------------------------------------------------------------- accounts


def customer_account_code(customer_id: str) -> str:
    return f"customer:{customer_id}"


def open_account(
    session: Session,
    *,
    code: str,
    customer_id: str | None = None,
    credit_limit_micros: int = 0,
) -> LedgerAccount:
    """Create an account; idempotent by code. Customer accounts enforce their credit limit."""
    _check_micros(credit_limit_micros, "credit_limit_micros", allow_zero=True)
    existing = _account_by_code(session, code)
    if existing is not None:
        return existing
    account = LedgerAccount(
        code=code,
        kind="customer" if customer_id else "platform",
        customer_id=customer_id,
        enforce_limit=customer_id is not None,
        credit_limit_micros=credit_limit_micros,
    )
    try:
        with session.begin_nested():
            session.add(account)
    except IntegrityError:
        # Another transaction opened it first.
        winner = _account_by_code(session, code)
        if winner is None:
            raise
        return winner
    return account


def _account_by_code(session: Session, code: str) -> LedgerAccount | None:
    return session.execute(
        select(LedgerAccount).where(col(LedgerAccount.code) == code)
    ).scalar_one_or_none()


def platform_account_id(session: Session, code: str) -> int:
    """The id of a platform account (the migrations create them; opened here if missing)."""
    if code not in PLATFORM_ACCOUNTS and code not in USAGE_REVENUE_CODES:
        raise NotFound(f"unknown platform account {code!r}")
    account_id = session.connection().execute(_ACCOUNT_BY_CODE, {"p_code": code}).scalar()
    if account_id is not None:
        return int(account_id)
    account = open_account(session, code=code)
    assert account.id is not None
    return account.id


def usage_revenue_account_id(session: Session, customer_account_id: int) -> int:
    """The usage revenue shard a customer account's charges credit."""
    return platform_account_id(
        session, usage_revenue_code(customer_account_id % USAGE_REVENUE_SHARDS)
    )


def customer_account_id(session: Session, customer_id: str) -> int:
    account_id = session.execute(
        select(col(LedgerAccount.id)).where(col(LedgerAccount.customer_id) == customer_id)
    ).scalar_one_or_none()
    if account_id is None:
        raise NotFound(f"customer {customer_id} has no ledger account")
    return int(account_id)


def get_balance(session: Session, account_id: int) -> Balance:
    row = session.connection().execute(_BALANCE, {"p_account": account_id}).first()
    if row is None:
        raise NotFound(f"ledger account {account_id} does not exist")
    return Balance(
        posted_micros=int(row[0]), held_micros=int(row[1]), credit_limit_micros=int(row[2])
    )


def set_credit_limit(session: Session, *, account_id: int, credit_limit_micros: int) -> None:
    """Lower or raise the limit; lowering below what is already spent is refused."""
    _check_micros(credit_limit_micros, "credit_limit_micros", allow_zero=True)
    cols = _accounts.c
    result = session.execute(
        update(LedgerAccount)
        .where(
            cols.id == account_id,
            cols.credits_posted - cols.debits_posted - cols.debits_pending >= -credit_limit_micros,
        )
        .values(credit_limit_micros=credit_limit_micros)
    )
    if rowcount(result) != 1:
        _raise_for_missing_or_short(session, account_id)


# --------------------------------------------------------------------------------- transfers


def transfer(
    session: Session,
    *,
    idempotency_key: str,
    debit_account_id: int,
    credit_account_id: int,
    amount_micros: int,
    code: str,
    reference: str | None = None,
    memo: str = "",
    actor_user_id: int | None = None,
) -> TransferRow:
    """Move amount_micros at once. The debit side may not pass its credit limit.

    A repeat of the key returns the first transfer with `replayed` set: nothing moved.
    """
    return _create(
        session,
        TransferRow(
            idempotency_key=idempotency_key,
            kind="single",
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            amount_micros=amount_micros,
            code=code,
            reference=reference,
            memo=memo,
            actor_user_id=actor_user_id,
        ),
    )


def hold(
    session: Session,
    *,
    idempotency_key: str,
    debit_account_id: int,
    credit_account_id: int,
    amount_micros: int,
    code: str,
    reference: str | None = None,
    expires_at: datetime | None = None,
) -> TransferRow:
    """Reserve amount_micros (a pending transfer). InsufficientCredits if it does not fit."""
    return _create(
        session,
        TransferRow(
            idempotency_key=idempotency_key,
            kind="pending",
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            amount_micros=amount_micros,
            code=code,
            reference=reference,
            expires_at=expires_at or utcnow() + DEFAULT_HOLD_TTL,
        ),
    )


def post(session: Session, *, hold_id: int, amount_micros: int) -> TransferRow:
    """Charge amount_micros (at most the held amount) and release the rest of the hold."""
    return _resolve(session, hold_id=hold_id, kind="post", amount_micros=amount_micros)


def void(session: Session, *, hold_id: int) -> TransferRow:
    """Release the whole hold; nothing is charged."""
    return _resolve(session, hold_id=hold_id, kind="void", amount_micros=0)


def stale_hold_ids(session: Session, *, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Open holds past their expires_at, oldest first."""
    resolution = _transfers.alias("resolution")
    pending = _transfers
    rows = session.execute(
        select(pending.c.id)
        .outerjoin(resolution, resolution.c.pending_id == pending.c.id)
        .where(
            pending.c.kind == "pending",
            pending.c.expires_at < (now or utcnow()),
            resolution.c.id.is_(None),
        )
        .order_by(pending.c.id)
        .limit(limit)
    ).scalars()
    return [int(hold_id) for hold_id in rows]


def expire(session: Session, *, hold_id: int) -> bool:
    """Expire one hold; False if something else resolved it first."""
    try:
        _resolve(session, hold_id=hold_id, kind="expire", amount_micros=0)
    except AlreadyResolved:
        return False
    return True


def expire_stale_holds(session: Session, *, now: datetime | None = None, limit: int = 500) -> int:
    """Expire stale holds in the caller's transaction (tests and small batches).

    The app's periodic job uses jobs.expire_holds_once instead: one short transaction per
    hold, so it never holds many account rows locked at once.
    """
    return sum(expire(session, hold_id=h) for h in stale_hold_ids(session, now=now, limit=limit))


def open_hold_count(session: Session) -> int:
    resolution = _transfers.alias("resolution")
    pending = _transfers
    return int(
        session.execute(
            select(func.count())
            .select_from(pending.outerjoin(resolution, resolution.c.pending_id == pending.c.id))
            .where(pending.c.kind == "pending", resolution.c.id.is_(None))
        ).scalar_one()
    )


# ---------------------------------------------------------------------------------- internals


def _check_micros(amount: int, field: str, *, allow_zero: bool = False) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed(f"{field} must be an integer number of micros")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise ValidationFailed(f"{field} must be {'zero or ' if allow_zero else ''}positive")
    if amount > MAX_MICROS:
        raise ValidationFailed(f"{field} is too large")


def _validate(new: TransferRow) -> None:
    key = new.idempotency_key
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_CHARS:
        raise ValidationFailed(f"idempotency key must be 1-{MAX_KEY_CHARS} characters")
    if key.startswith(RESERVED_KEY_PREFIX):
        raise ValidationFailed(f"idempotency keys starting {RESERVED_KEY_PREFIX!r} are reserved")
    _check_micros(new.amount_micros, "amount_micros")
    if new.debit_account_id == new.credit_account_id:
        raise ValidationFailed("debit and credit accounts must differ")
    if not new.code:
        raise ValidationFailed("a transfer needs a code saying why money moved")


_SAME_FIELDS = (
    "kind",
    "debit_account_id",
    "credit_account_id",
    "amount_micros",
    "code",
    "pending_id",
    "reference",
    "memo",
)


def _same_intent(old: TransferRow, new: TransferRow) -> bool:
    return all(getattr(old, name) == getattr(new, name) for name in _SAME_FIELDS)


def _row_to_transfer(row: Any) -> TransferRow | None:
    return None if row is None else TransferRow(**row._mapping)


def _existing(session: Session, key: str) -> TransferRow | None:
    return _row_to_transfer(session.connection().execute(_TRANSFER_BY_KEY, {"p_key": key}).first())


def _replay(session: Session, new: TransferRow) -> TransferRow | None:
    old = _existing(session, new.idempotency_key)
    if old is None:
        return None
    if not _same_intent(old, new):
        raise IdempotencyConflict(
            f"idempotency key {new.idempotency_key!r} was already used for a different transfer"
        )
    old.replayed = True
    return old


def _create(session: Session, new: TransferRow) -> TransferRow:
    """Apply a new transfer, or recognise a replay of its key. The first attempt is optimistic:
    a fresh key (the usual case) costs no lookup; a used key surfaces as a UNIQUE violation."""
    _validate(new)
    connection = session.connection()
    amount = new.amount_micros
    pending = new.kind == "pending"
    try:
        with connection.begin_nested():
            # Lock rows in id order so two opposite transfers cannot deadlock on PostgreSQL.
            for account_id in sorted((new.debit_account_id, new.credit_account_id)):
                params = {"p_account": account_id, "p_amount": amount}
                if account_id == new.debit_account_id:
                    if rowcount(connection.execute(_DEBIT[pending], params)) != 1:
                        _raise_for_missing_or_short(session, account_id)
                elif rowcount(connection.execute(_CREDIT[pending], params)) != 1:
                    raise NotFound(f"ledger account {account_id} does not exist")
            new.id = connection.execute(
                _INSERT_TRANSFER, {name: getattr(new, name) for name in _TRANSFER_COLUMNS}
            ).scalar_one()
    except (IntegrityError, InsufficientCredits, NotFound):
        # A used key (perhaps committed concurrently) answers as a replay, whatever else the
        # attempt ran into; a conflicting replay raises IdempotencyConflict.
        replay = _replay(session, new)
        if replay is None:
            raise
        return replay
    return new


def _raise_for_missing_or_short(session: Session, account_id: int) -> None:
    exists = session.connection().execute(_ACCOUNT_EXISTS, {"p_account": account_id}).first()
    if exists is None:
        raise NotFound(f"ledger account {account_id} does not exist")
    raise InsufficientCredits("insufficient credits")


def _resolve(session: Session, *, hold_id: int, kind: str, amount_micros: int) -> TransferRow:
    _check_micros(amount_micros, "amount_micros", allow_zero=True)
    held = _row_to_transfer(
        session.connection().execute(_TRANSFER_BY_ID, {"p_id": hold_id}).first()
    )
    if held is None or held.kind != "pending":
        raise NotFound(f"hold {hold_id} does not exist")
    if amount_micros > held.amount_micros:
        raise ValidationFailed(
            f"cannot post {amount_micros} micros against a hold of {held.amount_micros}"
        )
    new = TransferRow(
        idempotency_key=resolve_key(hold_id),
        kind=kind,
        debit_account_id=held.debit_account_id,
        credit_account_id=held.credit_account_id,
        amount_micros=amount_micros,
        pending_id=hold_id,
        code=held.code,
        reference=held.reference,
    )
    connection = session.connection()
    try:
        with connection.begin_nested():
            # Claim the hold first: the UNIQUE(pending_id) insert is what makes it resolve once.
            new.id = connection.execute(
                _INSERT_TRANSFER, {name: getattr(new, name) for name in _TRANSFER_COLUMNS}
            ).scalar_one()
            _release_and_post(session, held, amount_micros)
            # After the accounts, as every path locks them: the hold's share of a hard budget.
            budget_holds.release(connection, hold_id=hold_id)
            key_caps.release(connection, hold_id=hold_id)
    except IntegrityError:
        existing = _row_to_transfer(connection.execute(_RESOLUTION_OF, {"p_id": hold_id}).first())
        if existing is None:
            raise
        return _repeat_resolution(existing, new)
    return new


def _repeat_resolution(existing: TransferRow, new: TransferRow) -> TransferRow:
    if existing.kind == new.kind and existing.amount_micros == new.amount_micros:
        return existing
    raise AlreadyResolved(f"hold {new.pending_id} was already resolved ({existing.kind})")


def _release_and_post(session: Session, held: TransferRow, posted: int) -> None:
    connection = session.connection()
    for account_id in sorted((held.debit_account_id, held.credit_account_id)):
        statement = _RELEASE_DEBIT if account_id == held.debit_account_id else _RELEASE_CREDIT
        params = {"p_account": account_id, "p_held": held.amount_micros, "p_posted": posted}
        if rowcount(connection.execute(statement, params)) != 1:
            raise RuntimeError(f"ledger account {account_id} holds less than hold {held.id}")


# ------------------------------------------------------------------------------------ verify


def verify(session: Session) -> list[str]:
    """Check every ledger invariant against the stored rows; return what is violated."""
    problems: list[str] = []
    problems += _verify_limits(session)
    problems += _verify_totals(session)
    problems += _verify_cached_balances(session)
    problems += _verify_resolutions(session)
    return problems


def _verify_limits(session: Session) -> list[str]:
    cols = _accounts.c
    rows = session.execute(
        select(cols.code).where(
            cols.enforce_limit.is_(True),
            cols.credits_posted - cols.debits_posted - cols.debits_pending
            < -cols.credit_limit_micros,
        )
    ).scalars()
    return [f"{code}: available is below its credit limit" for code in rows]


def _verify_totals(session: Session) -> list[str]:
    cols = _accounts.c
    row = session.execute(
        select(
            func.coalesce(func.sum(cols.debits_posted), 0),
            func.coalesce(func.sum(cols.credits_posted), 0),
            func.coalesce(func.sum(cols.debits_pending), 0),
            func.coalesce(func.sum(cols.credits_pending), 0),
        )
    ).one()
    problems = []
    if row[0] != row[1]:
        problems.append(f"posted debits {row[0]} != posted credits {row[1]}")
    if row[2] != row[3]:
        problems.append(f"pending debits {row[2]} != pending credits {row[3]}")
    return problems


def _verify_cached_balances(session: Session) -> list[str]:
    t = _transfers
    resolution = t.alias("resolution")
    posted = t.c.kind.in_(("single", "post"))
    open_hold = and_(t.c.kind == "pending", resolution.c.id.is_(None))
    joined = t.outerjoin(resolution, resolution.c.pending_id == t.c.id)
    expected: dict[int, list[int]] = {}
    for side, column in ((0, t.c.debit_account_id), (1, t.c.credit_account_id)):
        rows = session.execute(
            select(
                column,
                func.coalesce(func.sum(t.c.amount_micros).filter(posted), 0),
                func.coalesce(func.sum(t.c.amount_micros).filter(open_hold), 0),
            )
            .select_from(joined)
            .group_by(column)
        )
        for account_id, posted_sum, pending_sum in rows:
            sums = expected.setdefault(int(account_id), [0, 0, 0, 0])
            sums[side] = int(posted_sum)
            sums[side + 2] = int(pending_sum)
    problems = []
    # Core rows, not ORM objects: an identity map could hand back stale cached balances.
    accounts = session.connection().execute(
        select(_a.id, _a.code, _a.debits_posted, _a.credits_posted, _a.debits_pending,
               _a.credits_pending)
    )  # fmt: skip
    for account_id, code, *have in accounts:
        want = expected.get(int(account_id), [0, 0, 0, 0])
        if list(have) != want:
            problems.append(
                f"{code}: cached (debits, credits, debits pending, credits pending) "
                f"{tuple(have)} != sum of transfers {tuple(want)}"
            )
    return problems


def _verify_resolutions(session: Session) -> list[str]:
    t = _transfers
    held = t.alias("held")
    rows = session.execute(
        select(t.c.id, t.c.kind, t.c.amount_micros, held.c.kind, held.c.amount_micros)
        .select_from(t.outerjoin(held, held.c.id == t.c.pending_id))
        .where(t.c.pending_id.is_not(None))
        .where(
            or_(
                held.c.id.is_(None),
                held.c.kind != "pending",
                t.c.amount_micros > held.c.amount_micros,
                t.c.debit_account_id != held.c.debit_account_id,
                t.c.credit_account_id != held.c.credit_account_id,
            )
        )
    )
    problems = [f"transfer {row[0]} ({row[1]}) does not match the hold it resolves" for row in rows]
    twice = session.execute(
        select(t.c.pending_id)
        .where(t.c.pending_id.is_not(None))
        .group_by(t.c.pending_id)
        .having(func.count() > 1)
    ).scalars()
    problems += [f"hold {hold_id} was resolved more than once" for hold_id in twice]
    return problems


def get_transfer(session: Session, transfer_id: int) -> TransferRow:
    found = _row_to_transfer(
        session.connection().execute(_TRANSFER_BY_ID, {"p_id": transfer_id}).first()
    )
    if found is None:
        raise NotFound(f"transfer {transfer_id} does not exist")
    return found
