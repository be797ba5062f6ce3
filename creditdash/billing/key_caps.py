"""An API key's monthly spend cap, kept in the database so that every gateway process sees it.

The cap is on the key (api_keys.monthly_spend_cap_micros); the key's running totals are one
key_spend row, kept the way billing/budget_holds.py keeps a workspace's hard budget:

- spent_micros is the month's usage charges of the key: every usage record with a price adds it
  in the record's own transaction (count_spend here, and the same statement on the gateway's
  raw path in billing/hotpath.py), counted in the month of the record's created_at;
- held_micros is the sum of the key's open capped holds. A hold for a capped key is counted by
  one conditional UPDATE in the hold's own transaction:

      held = held + amount  WHERE spent + held + amount <= cap   (spent as 0 in a new month)

  and its row count decides (0: SpendCapReached, and the caller's transaction, with the balance
  hold, is undone). Concurrent holds, from any process, serialize on the row and each re-checks
  the WHERE clause against the committed row, so together they can never pass the cap;
- the hold's share is a key_holds row; whatever resolves the hold (ledger._resolve: post, void,
  expire) deletes that row and takes its amount out of held.

The row is made the first time a capped key holds, from the month's usage records. Requests of
the key that were already in flight then (placed before the key had a cap) are not in held,
though their charges reach spent when they settle. The row locks after the ledger accounts and
the budget row, on every path, so no two transactions wait on each other in a cycle.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import TextClause, bindparam, delete, func, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from creditdash.billing.budget_holds import period_of
from creditdash.billing.budgets_models import KeyHold, KeySpend
from creditdash.billing.models import Transfer, UsageRecord
from creditdash.core.db import rowcount
from creditdash.core.errors import SpendCapReached
from creditdash.core.timeutil import utcnow

_spend = KeySpend.__table__  # type: ignore[attr-defined]
_holds = KeyHold.__table__  # type: ignore[attr-defined]
_usage = UsageRecord.__table__  # type: ignore[attr-defined]

# qmark SQL shared with billing/hotpath.py, as budget_holds.py does for budgets.
_SPENT_NOW = "CASE WHEN period < ? THEN 0 ELSE spent_micros END"
# Count a capped hold (params: period, period, period, amount, key, period, amount, cap).
RESERVE_SQL = (  # built from the constant above only
    f"UPDATE key_spend SET spent_micros = {_SPENT_NOW}, "  # noqa: S608
    "period = CASE WHEN period < ? THEN ? ELSE period END, held_micros = held_micros + ? "
    f"WHERE api_key_id = ? AND {_SPENT_NOW} + held_micros + ? <= ?"
)
# A charge into the spend of its record's month (params: period, price, period, price, period,
# period, key); matches no row for a key that never held under a cap.
COUNT_SPEND_SQL = (
    "UPDATE key_spend SET spent_micros = CASE WHEN period < ? THEN ? "
    "WHEN period = ? THEN spent_micros + ? ELSE spent_micros END, "
    "period = CASE WHEN period < ? THEN ? ELSE period END WHERE api_key_id = ?"
)
# A resolved hold's share out of held (params: amount, key, amount); 1 row or a bug.
RELEASE_SQL = (
    "UPDATE key_spend SET held_micros = held_micros - ? WHERE api_key_id = ? AND held_micros >= ?"
)


def reserve_params(key_id: str, amount: int, cap: int, period: str) -> tuple[object, ...]:
    return (period, period, period, amount, key_id, period, amount, cap)


def count_spend_params(key_id: str, price_micros: int, period: str) -> tuple[object, ...]:
    return (period, price_micros, period, price_micros, period, period, key_id)


def _text(sql: str) -> TextClause:
    """sql's qmark placeholders as the named bind parameters p0, p1, ..."""
    parts = sql.split("?")
    return text("".join(f"{part}:p{index}" for index, part in enumerate(parts[:-1])) + parts[-1])


def _named(values: tuple[object, ...]) -> dict[str, object]:
    return {f"p{index}": value for index, value in enumerate(values)}


_RESERVE = _text(RESERVE_SQL)
_COUNT_SPEND = _text(COUNT_SPEND_SQL)
_RELEASE = _text(RELEASE_SQL)
_ROW_EXISTS = select(_spend.c.api_key_id).where(_spend.c.api_key_id == bindparam("p_key"))
_INSERT_HOLD = insert(_holds)
_DELETE_HOLD = (
    delete(_holds)
    .where(_holds.c.hold_id == bindparam("p_hold"))
    .returning(_holds.c.api_key_id, _holds.c.amount_micros)
)


def month_spend(connection: Connection, key_id: str) -> int:
    """What the key's usage records of the current UTC month charged (from the records)."""
    start = utcnow().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    total = connection.execute(
        select(func.coalesce(func.sum(_usage.c.price_micros), 0)).where(
            _usage.c.api_key_id == key_id, _usage.c.created_at >= start
        )
    ).scalar_one()
    return int(total)


def _open_row(connection: Connection, key_id: str, period: str) -> None:
    """The key's row, made from the month's usage records the first time it holds under a cap."""
    if connection.execute(_ROW_EXISTS, {"p_key": key_id}).first() is not None:
        return
    try:
        with connection.begin_nested():
            connection.execute(
                insert(_spend).values(
                    api_key_id=key_id,
                    period=period,
                    spent_micros=month_spend(connection, key_id),
                    held_micros=0,
                )
            )
    except IntegrityError:
        pass  # a concurrent first hold made it


def reserve(
    connection: Connection, *, key_id: str, cap_micros: int, hold_id: int, amount_micros: int
) -> None:
    """Count the hold against the key's monthly cap; SpendCapReached if it would pass it.

    Runs in the hold's transaction, after the balance hold (and the budget's): the caller undoes
    all of it when this raises. A replayed hold (its key used before) is already counted."""
    try:
        with connection.begin_nested():
            connection.execute(
                _INSERT_HOLD,
                {"hold_id": hold_id, "api_key_id": key_id, "amount_micros": amount_micros},
            )
    except IntegrityError:
        return  # counted when the hold was first placed
    period = period_of()
    _open_row(connection, key_id, period)
    params = _named(reserve_params(key_id, amount_micros, cap_micros, period))
    if rowcount(connection.execute(_RESERVE, params)) != 1:
        raise SpendCapReached("This request could pass this key's monthly spend cap.")


def release(connection: Connection, *, hold_id: int) -> None:
    """The hold resolved: take its share out of the key's held (what it charged reaches spent
    with its usage record)."""
    row = connection.execute(_DELETE_HOLD, {"p_hold": hold_id}).first()
    if row is None:
        return  # not a capped hold
    params = _named((int(row[1]), row[0], int(row[1])))
    if rowcount(connection.execute(_RELEASE, params)) != 1:
        raise RuntimeError(f"the spend of key {row[0]} holds less than hold {hold_id}")


def count_spend(connection: Connection, *, key_id: str, price_micros: int, at: datetime) -> None:
    """Add a usage charge to its key's spend, in the month of the record (`at`)."""
    if price_micros > 0:
        params = _named(count_spend_params(key_id, price_micros, period_of(at)))
        connection.execute(_COUNT_SPEND, params)


def spent_and_held(session: Session, key_id: str) -> tuple[int, int]:
    """The key's spend this month and what its open capped holds keep back (0, 0 without a row)."""
    row = session.execute(
        select(col(KeySpend.period), col(KeySpend.spent_micros), col(KeySpend.held_micros)).where(
            col(KeySpend.api_key_id) == key_id
        )
    ).first()
    if row is None:
        return 0, 0
    spent = int(row[1]) if row[0] >= period_of() else 0
    return spent, int(row[2])


def problems(session: Session) -> list[str]:
    """ledger verify's check: each key's held is the sum of its open holds' rows, none of those
    holds is resolved, and a row counting this month spent what the key's records charged."""
    sums = dict(
        session.execute(
            select(col(KeyHold.api_key_id), func.sum(col(KeyHold.amount_micros))).group_by(
                col(KeyHold.api_key_id)
            )
        ).all()
    )
    found = []
    period = period_of()
    for key_id, row_period, spent, held in session.execute(
        select(
            col(KeySpend.api_key_id),
            col(KeySpend.period),
            col(KeySpend.spent_micros),
            col(KeySpend.held_micros),
        )
    ).all():
        want = int(sums.pop(key_id, 0) or 0)
        if int(held) != want:
            found.append(f"spend of key {key_id}: held {held} != its open holds {want}")
        if row_period == period:
            charged = month_spend(session.connection(), key_id)
            if int(spent) != charged:
                found.append(
                    f"spend of key {key_id}: spent {spent} != the month's usage charges {charged}"
                )
    found += [f"capped holds of key {k} without a key_spend row" for k in sums]
    resolution = Transfer.__table__.alias("resolution")  # type: ignore[attr-defined]
    resolved = session.execute(
        select(col(KeyHold.hold_id)).join(
            resolution, resolution.c.pending_id == col(KeyHold.hold_id)
        )
    ).scalars()
    found += [
        f"hold {hold_id} is resolved but still counted in a key's cap" for hold_id in resolved
    ]
    return found
