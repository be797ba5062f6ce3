"""The hard budget's share of a hold: reserved with it, released when it resolves.

A workspace with a hard monthly budget has every usage hold also reserved against the budget,
in the hold's own transaction, by one conditional UPDATE of the budget row:

    held = held + amount  WHERE period = current AND spent + held + amount <= budget

Its row count decides (0: BudgetExceeded, and the caller's transaction - with the balance
hold - is undone). Concurrent holds serialize on the budget row and each re-checks the WHERE
clause against the committed row, so racing requests can never together pass the budget.
The budget row is locked after the ledger accounts, in every path, so no two transactions wait
on each other in a cycle.

A new UTC month is a conditional roll-over (spent = 0 WHERE period < current) run just before;
the held amount carries over, since those holds are still open.

Resolving a hold (ledger._resolve: post, void or expire) deletes its budget_holds row and moves
its amount out of held, the posted part into spent: one DELETE for holds without a budget.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from creditdash.billing.budgets_models import Budget, BudgetHold
from creditdash.core.db import rowcount
from creditdash.core.errors import BudgetExceeded
from creditdash.core.timeutil import utcnow

_budgets = Budget.__table__  # type: ignore[attr-defined]
_holds = BudgetHold.__table__  # type: ignore[attr-defined]
_b = _budgets.c

_ROLL_OVER = (
    update(_budgets)
    .where(_b.customer_id == bindparam("p_customer"), _b.period < bindparam("p_period"))
    .values(period=bindparam("p_period"), spent_micros=0)
)
_RESERVE = (
    update(_budgets)
    .where(
        _b.customer_id == bindparam("p_customer"),
        _b.period == bindparam("p_period"),
        _b.hard.is_(True),
        _b.monthly_budget_micros.is_not(None),
        _b.spent_micros + _b.held_micros + bindparam("p_amount") <= _b.monthly_budget_micros,
    )
    .values(held_micros=_b.held_micros + bindparam("p_amount"))
)
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
_RELEASE = (
    update(_budgets)
    .where(_b.customer_id == bindparam("p_customer"), _b.held_micros >= bindparam("p_amount"))
    .values(
        held_micros=_b.held_micros - bindparam("p_amount"),
        spent_micros=_b.spent_micros + bindparam("p_posted"),
    )
)


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


def roll_over(connection: Connection, *, customer_id: str, period: str) -> None:
    """Start the workspace's new month if its row still counts an older one."""
    connection.execute(_ROLL_OVER, {"p_customer": customer_id, "p_period": period})


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
    roll_over(connection, customer_id=customer_id, period=period)
    params = {"p_customer": customer_id, "p_period": period, "p_amount": amount_micros}
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


def release(connection: Connection, *, hold_id: int, posted_micros: int) -> None:
    """The hold resolved: move its budget share out of held, the posted part into spent."""
    row = connection.execute(_DELETE_HOLD, {"p_hold": hold_id}).first()
    if row is None:
        return  # the hold was not counted in a budget
    params = {"p_customer": row[0], "p_amount": int(row[1]), "p_posted": posted_micros}
    if rowcount(connection.execute(_RELEASE, params)) != 1:
        raise RuntimeError(f"budget of {row[0]} holds less than hold {hold_id}")
