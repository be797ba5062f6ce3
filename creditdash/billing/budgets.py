"""Workspace budgets: the monthly budget (hard or soft), its threshold alerts and the
low-balance alert.

A hard budget refuses holds that would pass it (billing/budget_holds.py, in the hold's own
transaction); a soft one only alerts. Alerts are events in the outbox (core/outbox.py):
- budget.threshold, once per workspace, UTC month and threshold (its dedupe key says so), when
  the month's spend reaches threshold percent of the budget;
- balance.low, once per crossing below low_balance_micros: a conditional UPDATE disarms the
  alert as it is sent, and one that finds the balance back at or above the line re-arms it.
check_alerts runs after a settlement that charged a workspace with a budget (off the request's
path) and from the jobs loop as the backstop; both are idempotent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlmodel import Session, col

from creditdash.accounts import roles
from creditdash.accounts.customers import get_customer
from creditdash.billing import ledger
from creditdash.billing.budget_holds import next_reset, period_of
from creditdash.billing.budgets_models import DEFAULT_THRESHOLDS, Budget, BudgetHold
from creditdash.billing.models import Transfer, UsageRecord
from creditdash.core import audit, db, outbox
from creditdash.core.db import rowcount
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.money import MAX_MICROS
from creditdash.core.timeutil import utcnow

MAX_THRESHOLDS = 10
PERMISSION = "budgets.manage"
THRESHOLD_EVENT = "budget.threshold"
LOW_BALANCE_EVENT = "balance.low"

_budgets = Budget.__table__  # type: ignore[attr-defined]
_b = _budgets.c


@dataclass(frozen=True)
class BudgetStatus:
    customer_id: str
    period: str
    monthly_budget_micros: int | None
    hard: bool
    thresholds: tuple[int, ...]
    low_balance_micros: int | None
    spent_micros: int
    held_micros: int
    # Whole percent of the budget spent (None without a budget); may pass 100 on a soft one.
    percent: int | None
    resets_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "period": self.period,
            "monthly_budget_micros": self.monthly_budget_micros,
            "hard": self.hard,
            "thresholds": list(self.thresholds),
            "low_balance_micros": self.low_balance_micros,
            "spent_micros": self.spent_micros,
            "held_micros": self.held_micros,
            "percent": self.percent,
            "resets_at": self.resets_at.isoformat(),
        }


def check_thresholds(thresholds: Any) -> tuple[int, ...]:
    """Sorted, validated threshold percents: unique whole numbers 1-100, at most 10."""
    if isinstance(thresholds, (str, bytes)) or not hasattr(thresholds, "__iter__"):
        raise ValidationFailed("thresholds must be a list of whole percents")
    values = list(thresholds)
    if len(values) > MAX_THRESHOLDS:
        raise ValidationFailed(f"at most {MAX_THRESHOLDS} thresholds")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise ValidationFailed("each threshold is a whole percent from 1 to 100")
    if len(set(values)) != len(values):
        raise ValidationFailed("thresholds must not repeat")
    return tuple(sorted(values))


def parse_thresholds(text: str) -> tuple[int, ...]:
    """'50,80,100' as threshold percents; an empty text is no thresholds."""
    parts = [part.strip() for part in text.split(",")] if text.strip() else []
    if any(not part.isascii() or not part.isdigit() for part in parts):
        raise ValidationFailed("thresholds are whole percents separated by commas, like 50,80,100")
    return check_thresholds([int(part) for part in parts])


def _check_amount(value: int | None, field: str, *, allow_zero: bool) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(f"{field} must be a whole number of micros")
    if value < (0 if allow_zero else 1) or value > MAX_MICROS:
        low = "0" if allow_zero else "more than 0"
        raise ValidationFailed(f"{field} must be {low} and at most {MAX_MICROS} micros")


def month_spend(session: Session, customer_id: str, now: datetime | None = None) -> int:
    """What the workspace was charged for usage in the current UTC month."""
    now = now or utcnow()
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    total = session.execute(
        select(func.coalesce(func.sum(col(UsageRecord.price_micros)), 0)).where(
            col(UsageRecord.customer_id) == customer_id, col(UsageRecord.created_at) >= start
        )
    ).scalar_one()
    return int(total)


def _snapshot(budget: Budget | None) -> dict[str, Any] | None:
    if budget is None:
        return None
    return {
        "monthly_budget_micros": budget.monthly_budget_micros,
        "hard": budget.hard,
        "thresholds": json.loads(budget.thresholds_json),
        "low_balance_micros": budget.low_balance_micros,
    }


def _authorize(session: Session, customer_id: str, user_id: int | None) -> None:
    get_customer(session, customer_id)  # NotFound for an unknown workspace
    if user_id is not None:
        roles.require(session, user_id=user_id, customer_id=customer_id, permission=PERMISSION)


def set_budget(
    session: Session,
    *,
    customer_id: str,
    monthly_micros: int | None,
    hard: bool,
    thresholds: Any = DEFAULT_THRESHOLDS,
    low_balance_micros: int | None = None,
    actor: audit.Actor,
    user_id: int | None = None,
) -> BudgetStatus:
    """Set (or replace) the workspace's budget. With user_id, the user must be allowed
    budgets.manage in it. Bad input raises ValidationFailed and changes nothing."""
    _check_amount(monthly_micros, "monthly budget", allow_zero=False)
    _check_amount(low_balance_micros, "low-balance alert", allow_zero=False)
    checked = check_thresholds(thresholds)
    if hard and monthly_micros is None:
        raise ValidationFailed("a hard budget needs a monthly amount")
    _authorize(session, customer_id, user_id)
    budget = session.get(Budget, customer_id, with_for_update=True)
    before = _snapshot(budget)
    period = period_of()
    if budget is None:
        budget = Budget(customer_id=customer_id, period=period, spent_micros=0, held_micros=0)
        session.add(budget)
    budget.monthly_budget_micros = monthly_micros
    budget.hard = hard
    budget.thresholds_json = json.dumps(list(checked))
    if budget.low_balance_micros != low_balance_micros:
        budget.low_balance_armed = True
    budget.low_balance_micros = low_balance_micros
    # The month's spend so far counts from the moment the budget is set: a budget set on the
    # 20th already includes the 1st to the 20th. (Only open holds move held_micros.)
    budget.period = period
    budget.spent_micros = month_spend(session, customer_id)
    budget.updated_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="budget.set",
        target_type="customer",
        target_id=customer_id,
        before=before,
        after=_snapshot(budget),
    )
    return get_budget_status(session, customer_id)


def clear_budget(
    session: Session, *, customer_id: str, actor: audit.Actor, user_id: int | None = None
) -> bool:
    """Remove the budget and its alerts; False when there was none. Open holds counted in it
    keep their budget_holds rows until they resolve, so the row stays with no amount set."""
    _authorize(session, customer_id, user_id)
    budget = session.get(Budget, customer_id, with_for_update=True)
    if budget is None or (
        budget.monthly_budget_micros is None and budget.low_balance_micros is None
    ):
        return False
    before = _snapshot(budget)
    budget.monthly_budget_micros = None
    budget.hard = False
    budget.low_balance_micros = None
    budget.updated_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="budget.clear",
        target_type="customer",
        target_id=customer_id,
        before=before,
        after=None,
    )
    return True


def get_budget_status(session: Session, customer_id: str) -> BudgetStatus:
    """The workspace's budget this month. NotFound when it has none."""
    budget = session.execute(
        select(Budget).where(col(Budget.customer_id) == customer_id)
    ).scalar_one_or_none()
    if budget is None or (
        budget.monthly_budget_micros is None and budget.low_balance_micros is None
    ):
        raise NotFound(f"workspace {customer_id} has no budget")
    return _status(session, budget)


def _status(session: Session, budget: Budget) -> BudgetStatus:
    period = period_of()
    # The row counts its month's spend with every usage record (budget_holds.count_spend); a
    # row from an older month has spent nothing yet this month.
    spent = budget.spent_micros if budget.period == period else 0
    limit = budget.monthly_budget_micros
    return BudgetStatus(
        customer_id=budget.customer_id,
        period=period,
        monthly_budget_micros=limit,
        hard=budget.hard,
        thresholds=tuple(json.loads(budget.thresholds_json)),
        low_balance_micros=budget.low_balance_micros,
        spent_micros=spent,
        held_micros=budget.held_micros,
        percent=spent * 100 // limit if limit else None,
        resets_at=next_reset(period),
    )


def budget_statuses(session: Session) -> dict[str, BudgetStatus]:
    """Every workspace's budget, by customer id (the admin's overview)."""
    rows = session.execute(
        select(Budget).where(
            col(Budget.monthly_budget_micros).is_not(None)
            | col(Budget.low_balance_micros).is_not(None)
        )
    ).scalars()
    return {budget.customer_id: _status(session, budget) for budget in rows}


# ------------------------------------------------------------------------------------ alerts


def check_alerts(session: Session, *, customer_id: str) -> list[str]:
    """Emit the workspace's alerts that are due and not yet sent; the new events' ids."""
    budget = session.execute(
        select(Budget).where(col(Budget.customer_id) == customer_id)
    ).scalar_one_or_none()
    if budget is None:
        return []
    emitted: list[str] = []
    status = _status(session, budget)
    limit = status.monthly_budget_micros
    if limit:
        for threshold in status.thresholds:
            # Integer arithmetic: spent reaches t% when spent * 100 >= t * budget.
            if status.spent_micros * 100 < threshold * limit:
                break
            event = outbox.emit(
                session,
                type=THRESHOLD_EVENT,
                customer_id=customer_id,
                data={
                    "threshold_percent": threshold,
                    "budget_micros": limit,
                    "spent_micros": status.spent_micros,
                    "period": status.period,
                    "hard": status.hard,
                },
                dedupe_key=f"{THRESHOLD_EVENT}:{customer_id}:{status.period}:{threshold}",
            )
            if event is not None:
                emitted.append(event)
    line = budget.low_balance_micros
    if line is not None:
        account_id = ledger.customer_account_id(session, customer_id)
        available = ledger.get_balance(session, account_id).available_micros
        event = _low_balance(session, customer_id, available, line)
        if event is not None:
            emitted.append(event)
    return emitted


def _low_balance(session: Session, customer_id: str, available: int, line: int) -> str | None:
    below = available < line
    # Disarm (and alert) or re-arm with one conditional UPDATE: of many concurrent checks that
    # see the same crossing, exactly one matches the row.
    flip = (
        update(_budgets)
        .where(_b.customer_id == customer_id, _b.low_balance_armed.is_(below))
        .values(low_balance_armed=not below)
    )
    if rowcount(session.connection().execute(flip)) != 1 or not below:
        return None
    return outbox.emit(
        session,
        type=LOW_BALANCE_EVENT,
        customer_id=customer_id,
        data={"available_micros": available, "threshold_micros": line},
    )


def check_all_alerts() -> int:
    """The jobs loop's backstop: every workspace with a budget or low-balance alert, each in
    its own short transaction. Returns how many events it emitted."""
    with db.session_scope(readonly=True) as session:
        customers = list(
            session.execute(
                select(col(Budget.customer_id)).where(
                    col(Budget.monthly_budget_micros).is_not(None)
                    | col(Budget.low_balance_micros).is_not(None)
                )
            ).scalars()
        )
    emitted = 0
    for customer_id in customers:
        with db.session_scope() as session:
            emitted += len(check_alerts(session, customer_id=customer_id))
    return emitted


def open_budget_hold_problems(session: Session) -> list[str]:
    """ledger verify's check: each budget's held amount is the sum of its open holds' rows,
    every such row's hold is still open, and a row counting the current month has spent what
    that month's usage records charged."""
    sums = dict(
        session.execute(
            select(col(BudgetHold.customer_id), func.sum(col(BudgetHold.amount_micros))).group_by(
                col(BudgetHold.customer_id)
            )
        ).all()
    )
    problems = []
    for customer_id, held in session.execute(
        select(col(Budget.customer_id), col(Budget.held_micros))
    ).all():
        want = int(sums.pop(customer_id, 0) or 0)
        if int(held) != want:
            problems.append(f"budget of {customer_id}: held {held} != its open holds {want}")
    problems += [f"budget holds of {c} without a budget row" for c in sums]
    resolution = Transfer.__table__.alias("resolution")  # type: ignore[attr-defined]
    resolved = session.execute(
        select(col(BudgetHold.hold_id)).join(
            resolution, resolution.c.pending_id == col(BudgetHold.hold_id)
        )
    ).scalars()
    problems += [
        f"hold {hold_id} is resolved but still counted in a budget" for hold_id in resolved
    ]
    period = period_of()
    for customer_id, spent in session.execute(
        select(col(Budget.customer_id), col(Budget.spent_micros)).where(
            col(Budget.period) == period
        )
    ).all():
        charged = month_spend(session, customer_id)
        if int(spent) != charged:
            problems.append(
                f"budget of {customer_id}: spent {spent} != the month's usage charges {charged}"
            )
    return problems
