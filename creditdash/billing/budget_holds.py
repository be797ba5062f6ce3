"""The budget row's two running totals: what the month spent, and what open holds keep back.

spent_micros is the month's usage charges: every usage record written with a price adds it, in
the record's own transaction (count_spend here; the gateway's raw path in billing/hotpath.py does
the same statement for statement). So the budget's spend is read from one row, never summed.

held_micros is the hard budget's share of the open holds. A workspace with a hard monthly budget
has every usage hold also reserved against the budget, in the hold's own transaction, by one
conditional UPDATE of the budget row:

    held = held + amount  WHERE spent + held + amount <= budget   (spent as 0 in a new month)

Its row count decides (0: BudgetExceeded, and the caller's transaction - with the balance
hold - is undone). Concurrent holds serialize on the budget row and each re-checks the WHERE
clause against the committed row, so racing requests can never together pass the budget.
The budget row is locked after the ledger accounts, in every path, so no two transactions wait
on each other in a cycle.

A new UTC month starts in the same UPDATE that first touches the row in it (spent = 0 or the
first charge, period = the month); held carries over, since those holds are still open.

Resolving a hold (ledger._resolve: post, void or expire) deletes its budget_holds row and takes
its amount out of held: one DELETE for holds without a budget. What was charged reaches spent
through the usage record, as for every request.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import TextClause, bindparam, delete, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from creditdash.billing.budgets_models import Budget, BudgetHold
from creditdash.core.db import rowcount
from creditdash.core.errors import BudgetExceeded
from creditdash.core.timeutil import utcnow

_budgets = Budget.__table__  # type: ignore[attr-defined]
_holds = BudgetHold.__table__  # type: ignore[attr-defined]
_b = _budgets.c

# The statements as SQL text with qmark placeholders, shared with billing/hotpath.py (which
# runs them on the raw driver connection) so that both paths keep the budget the same way.

# The month's spend as the row has it: 0 when the row still counts an older month.
_SPENT_NOW = "CASE WHEN period < ? THEN 0 ELSE spent_micros END"
# Reserve a hold's amount in a hard budget (params: period, period, period, amount, customer,
# period, amount); starts the new month on the way.
RESERVE_SQL = (  # built from the constant above only
    f"UPDATE budgets SET spent_micros = {_SPENT_NOW}, "  # noqa: S608
    "period = CASE WHEN period < ? THEN ? ELSE period END, held_micros = held_micros + ? "
    "WHERE customer_id = ? AND hard IS TRUE AND monthly_budget_micros IS NOT NULL "
    f"AND {_SPENT_NOW} + held_micros + ? <= monthly_budget_micros"
)
# Count a charge in the spend of its usage record's month (params: period, price, period,
# price, period, period, customer): a newer month starts the row again from this charge, an
# older one (a record from just before midnight, settled after) is not this month's spend.
# Matches no row for a workspace without a budget row.
COUNT_SPEND_SQL = (
    "UPDATE budgets SET spent_micros = CASE WHEN period < ? THEN ? "
    "WHEN period = ? THEN spent_micros + ? ELSE spent_micros END, "
    "period = CASE WHEN period < ? THEN ? ELSE period END WHERE customer_id = ?"
)
# A resolved hold's share out of held (params: amount, customer, amount); 1 row or a bug.
RELEASE_SQL = (
    "UPDATE budgets SET held_micros = held_micros - ? WHERE customer_id = ? AND held_micros >= ?"
)
INSERT_HOLD_SQL = "INSERT INTO budget_holds (hold_id, customer_id, amount_micros) VALUES (?, ?, ?)"
DELETE_HOLD_SQL = "DELETE FROM budget_holds WHERE hold_id = ?"


def reserve_params(customer_id: str, amount_micros: int, period: str) -> tuple[object, ...]:
    return (period, period, period, amount_micros, customer_id, period, amount_micros)


def count_spend_params(customer_id: str, price_micros: int, period: str) -> tuple[object, ...]:
    return (period, price_micros, period, price_micros, period, period, customer_id)


def _text(sql: str, *names: str) -> TextClause:
    """sql's qmark placeholders as named bind parameters, for a SQLAlchemy connection."""
    parts = sql.split("?")
    assert len(parts) == len(names) + 1, sql
    return text(
        "".join(part + f":{name}" for part, name in zip(parts, names, strict=False)) + parts[-1]
    )


_RESERVE = _text(RESERVE_SQL, "p0", "p1", "p2", "p3", "p4", "p5", "p6")
_COUNT_SPEND = _text(COUNT_SPEND_SQL, "p0", "p1", "p2", "p3", "p4", "p5", "p6")
_RELEASE = _text(RELEASE_SQL, "p0", "p1", "p2")


def _positional(values: tuple[object, ...]) -> dict[str, object]:
    return {f"p{index}": value for index, value in enumerate(values)}


_INSERT_HOLD = insert(_holds)
_DELETE_HOLD = (
    delete(_holds)
    .where(_holds.c.hold_id == bindparam("p_hold"))
    .returning(_holds.c.customer_id, _holds.c.amount_micros)
)
_HARD_BUDGET = select(_b.monthly_budget_micros, _b.hard).where(
    _b.customer_id == bindparam("p_customer")
)
_FORGET_HOLD = delete(_holds).where(_holds.c.hold_id == bindparam("p_hold"))


def period_of(now: datetime | None = None) -> str:
    """The UTC calendar month a moment falls in, as 'YYYY-MM'."""
    return (now or utcnow()).strftime("%Y-%m")


def next_reset(period: str) -> datetime:
    """The first moment (UTC) of the month after period."""
    year, month = (int(part) for part in period.split("-"))
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return utcnow().replace(
        year=year, month=month, day=1, hour=0, minute=0, second=0, microsecond=0
    )


def reserve(connection: Connection, *, customer_id: str, hold_id: int, amount_micros: int) -> None:
    """Count the hold in the workspace's hard budget; BudgetExceeded if it would pass it.

    Runs in the hold's transaction, right after the balance hold: the caller undoes both when
    this raises. A replayed hold (its key used before) is already counted and passes as is."""
    try:
        with connection.begin_nested():
            connection.execute(
                _INSERT_HOLD,
                {"hold_id": hold_id, "customer_id": customer_id, "amount_micros": amount_micros},
            )
    except IntegrityError:
        return  # counted when the hold was first placed
    period = period_of()
    params = _positional(reserve_params(customer_id, amount_micros, period))
    if rowcount(connection.execute(_RESERVE, params)) == 1:
        return
    # Refused, or the budget was cleared or made soft since the caller's cached key said it
    # was hard: only a budget that is still hard refuses (a read on this rare path only).
    row = connection.execute(_HARD_BUDGET, {"p_customer": customer_id}).first()
    if row is not None and row[0] is not None and row[1]:
        raise BudgetExceeded(
            "This workspace's monthly budget is reached; it resets on "
            f"{next_reset(period):%Y-%m-%d} 00:00 UTC."
        )
    connection.execute(_FORGET_HOLD, {"p_hold": hold_id})


def release(connection: Connection, *, hold_id: int) -> None:
    """The hold resolved: take its budget share out of held (what it charged is counted in
    spent with its usage record)."""
    row = connection.execute(_DELETE_HOLD, {"p_hold": hold_id}).first()
    if row is None:
        return  # the hold was not counted in a budget
    params = _positional((int(row[1]), row[0], int(row[1])))
    if rowcount(connection.execute(_RELEASE, params)) != 1:
        raise RuntimeError(f"budget of {row[0]} holds less than hold {hold_id}")


def count_spend(
    connection: Connection, *, customer_id: str, price_micros: int, at: datetime
) -> None:
    """Add a usage charge to the spend of its record's month (in the usage record's
    transaction, after the ledger accounts; `at` is the record's created_at). Nothing for a
    workspace without a budget row, or a free request."""
    if price_micros > 0:
        params = _positional(count_spend_params(customer_id, price_micros, period_of(at)))
        connection.execute(_COUNT_SPEND, params)
