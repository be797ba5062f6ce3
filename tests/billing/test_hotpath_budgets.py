"""Budgets on the raw-connection path (billing/hotpath.py), on SQLite and PostgreSQL.

The hot hold counts a hard budget's share in its own transaction and refuses by row count; the
hot settlement takes the share out of held and adds the price to the month's spend, as the
SQLAlchemy path (metering.reserve / settle, budget_holds) does. A soft budget's spend is the
same running total, so its status is read from one row.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from creditdash.billing import budget_holds, budgets, health, ledger, metering
from creditdash.billing.budgets_models import Budget, BudgetHold
from creditdash.billing.hotpath import HotLedger
from creditdash.billing.models import Transfer, UsageRecord
from creditdash.core import db
from creditdash.core.audit import CLI
from creditdash.core.errors import BudgetExceeded
from creditdash.core.ids import new_id
from creditdash.core.timeutil import utcnow
from tests.factories import Funded, customer_with_key, hot_ledger, usage_entry

CREDIT = 1_000_000
TTL = timedelta(minutes=15)


def with_budget(engine: Engine, *, monthly: int, hard: bool) -> tuple[Funded, str]:
    who, key_id = customer_with_key(engine, 10 * CREDIT)
    with db.session_scope(engine=engine) as session:
        budgets.set_budget(
            session, customer_id=who.customer_id, monthly_micros=monthly, hard=hard, actor=CLI
        )
    return who, key_id


def row(engine: Engine, customer_id: str) -> tuple[str, int, int]:
    with db.session_scope(engine=engine, readonly=True) as session:
        budget = session.get(Budget, customer_id)
        assert budget is not None
        return budget.period, budget.spent_micros, budget.held_micros


def counts(engine: Engine) -> tuple[int, int, int]:
    with db.session_scope(engine=engine, readonly=True) as session:
        return tuple(  # type: ignore[return-value]
            session.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (Transfer, BudgetHold, UsageRecord)
        )


def hold(hot: HotLedger, raw: Any, who: Funded, amount: int, *, budgeted: bool = True) -> Any:
    return hot.hold(
        raw, request_id=new_id("req"), account_id=who.account_id,
        revenue_account_id=who.revenue_id, amount_micros=amount, expires_at=utcnow() + TTL,
        budget_customer_id=who.customer_id if budgeted else None,
    )  # fmt: skip


def test_a_hard_budget_is_counted_and_refused_in_the_hot_hold(engine: Engine, raw: Any) -> None:
    hot = hot_ledger(engine)
    who, key_id = with_budget(engine, monthly=CREDIT, hard=True)
    period = budget_holds.period_of()

    first = hold(hot, raw, who, 600_000)
    assert first is not None and first.budget_customer_id == who.customer_id
    assert row(engine, who.customer_id) == (period, 0, 600_000)
    before = counts(engine)
    # 600k held + 500k would pass the budget: nothing is written, not even the balance hold.
    assert hold(hot, raw, who, 500_000) is None
    assert counts(engine) == before
    with db.session_scope(engine=engine, readonly=True) as session:
        assert ledger.get_balance(session, who.account_id).held_micros == 600_000
    # The ledger's path, which the gateway falls back to, names the refusal.
    with pytest.raises(BudgetExceeded), db.session_scope(engine=engine) as session:
        metering.reserve(
            session, request_id=new_id("req"), account_id=who.account_id,
            amount_micros=500_000, ttl=TTL, budget_customer_id=who.customer_id,
        )  # fmt: skip

    # The settlement takes the share out of held and counts what it charged.
    stored = hot.settle(
        raw, hold=first, price_micros=250_000, record=usage_entry(who, key_id, first.reference),
        touch_key=False,
    )  # fmt: skip
    assert stored is not None
    assert row(engine, who.customer_id) == (period, 250_000, 0)
    # Now 250k spent + 750k fits exactly; one micro more does not.
    assert hold(hot, raw, who, 750_001) is None
    exact = hold(hot, raw, who, 750_000)
    assert exact is not None
    assert row(engine, who.customer_id) == (period, 250_000, 750_000)
    with db.session_scope(engine=engine) as session:
        ledger.void(session, hold_id=exact.id)  # the ledger's resolution releases it too
        status = budgets.get_budget_status(session, who.customer_id)
        assert (status.spent_micros, status.held_micros, status.percent) == (250_000, 0, 25)
        assert ledger.verify(session) == []
        assert budgets.open_budget_hold_problems(session) == []


def test_the_hot_hold_starts_a_new_month(engine: Engine, raw: Any) -> None:
    hot = hot_ledger(engine)
    who, _key = with_budget(engine, monthly=CREDIT, hard=True)
    with db.session_scope(engine=engine) as session:
        session.execute(update(Budget).values(period="2000-01", spent_micros=CREDIT))
    placed = hold(hot, raw, who, 900_000)
    assert placed is not None
    assert row(engine, who.customer_id) == (budget_holds.period_of(), 0, 900_000)


def test_a_budget_no_longer_hard_hands_the_hold_back(engine: Engine, raw: Any) -> None:
    # The key cache may still say "hard" for a few seconds after the budget was cleared.
    hot = hot_ledger(engine)
    who, _key = with_budget(engine, monthly=CREDIT, hard=True)
    with db.session_scope(engine=engine) as session:
        budgets.clear_budget(session, customer_id=who.customer_id, actor=CLI)
    before = counts(engine)
    assert hold(hot, raw, who, 2 * CREDIT) is None
    assert counts(engine) == before
    with db.session_scope(engine=engine) as session:
        # The ledger's path places it without a budget share.
        assert metering.reserve(
            session, request_id=new_id("req"), account_id=who.account_id,
            amount_micros=2 * CREDIT, ttl=TTL, budget_customer_id=who.customer_id,
        ) is not None  # fmt: skip
    assert row(engine, who.customer_id)[2] == 0


def test_every_charge_counts_in_a_soft_budget_on_both_paths(engine: Engine, raw: Any) -> None:
    hot = hot_ledger(engine)
    who, key_id = with_budget(engine, monthly=CREDIT, hard=False)
    period = budget_holds.period_of()
    # The hot path (no budget share for a soft budget).
    placed = hold(hot, raw, who, 500_000, budgeted=False)
    assert placed is not None
    record = usage_entry(who, key_id, placed.reference)
    assert hot.settle(raw, hold=placed, price_micros=300_000, record=record, touch_key=False)
    # The ledger's path, with an overage above the hold.
    request_id = new_id("req")
    with db.session_scope(engine=engine) as session:
        hold_id = metering.reserve(
            session, request_id=request_id, account_id=who.account_id, amount_micros=100_000,
            ttl=TTL,
        )  # fmt: skip
        metering.settle(
            session, hold_id=hold_id, account_id=who.account_id, price_micros=450_000,
            record=usage_entry(who, key_id, request_id),
        )  # fmt: skip
    # A free request and a void count nothing.
    free = hold(hot, raw, who, 10_000, budgeted=False)
    assert free is not None
    assert hot.settle(
        raw, hold=free, price_micros=0, record=usage_entry(who, key_id, free.reference),
        touch_key=False,
    )  # fmt: skip
    assert row(engine, who.customer_id) == (period, 750_000, 0)
    with db.session_scope(engine=engine) as session:
        status = budgets.get_budget_status(session, who.customer_id)
        # The row agrees with the month's usage records; the 50% alert is due (not 80%).
        assert status.spent_micros == budgets.month_spend(session, who.customer_id) == 750_000
        assert status.percent == 75
        assert len(budgets.check_alerts(session, customer_id=who.customer_id)) == 1


def test_a_settlement_without_a_budget_row_changes_no_budget(engine: Engine, raw: Any) -> None:
    hot = hot_ledger(engine)
    who, key_id = customer_with_key(engine, 5 * CREDIT)
    placed = hold(hot, raw, who, CREDIT, budgeted=False)
    assert placed is not None
    record = usage_entry(who, key_id, placed.reference)
    assert hot.settle(raw, hold=placed, price_micros=CREDIT, record=record, touch_key=True)
    with db.session_scope(engine=engine, readonly=True) as session:
        assert session.execute(select(func.count()).select_from(Budget)).scalar_one() == 0
        assert ledger.verify(session) == []


def test_a_charge_recorded_last_month_is_not_this_months_spend(engine: Engine, raw: Any) -> None:
    # A request that started before midnight UTC on the last day and settled after it.
    hot = hot_ledger(engine)
    who, key_id = with_budget(engine, monthly=CREDIT, hard=False)
    last_month = utcnow().replace(day=1, hour=0, minute=0, second=0) - timedelta(seconds=1)
    placed = hold(hot, raw, who, 500_000, budgeted=False)
    assert placed is not None
    record = usage_entry(who, key_id, placed.reference)
    record.created_at = last_month
    assert hot.settle(raw, hold=placed, price_micros=200_000, record=record, touch_key=False)
    request_id = new_id("req")
    with db.session_scope(engine=engine) as session:
        late = usage_entry(who, key_id, request_id)
        late.created_at = last_month
        metering.settle(
            session, hold_id=None, account_id=who.account_id, price_micros=100_000, record=late
        )
    assert row(engine, who.customer_id)[1:] == (0, 0)
    with db.session_scope(engine=engine, readonly=True) as session:
        assert health.check(session) == []


def test_ledger_verify_sees_a_spend_that_is_not_the_months_charges(
    engine: Engine, raw: Any
) -> None:
    hot = hot_ledger(engine)
    who, key_id = with_budget(engine, monthly=CREDIT, hard=True)
    placed = hold(hot, raw, who, 500_000)
    assert placed is not None
    record = usage_entry(who, key_id, placed.reference)
    assert hot.settle(raw, hold=placed, price_micros=200_000, record=record, touch_key=False)
    with db.session_scope(engine=engine, readonly=True) as session:
        assert health.check(session) == []
    with db.session_scope(engine=engine) as session:
        session.execute(update(Budget).values(spent_micros=Budget.spent_micros - 1))
    with db.session_scope(engine=engine, readonly=True) as session:
        assert any("spent 199999" in problem for problem in health.check(session))
