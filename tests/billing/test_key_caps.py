"""An API key's monthly spend cap in the database (billing/key_caps.py): holds counted against
it by row count, released by every resolution, spend counted on both settlement paths, exact
under concurrent holds, checked by ledger verify."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from creditdash.billing import health, ledger, metering
from creditdash.billing.budget_holds import period_of
from creditdash.billing.budgets_models import KeyHold, KeySpend
from creditdash.billing.models import UsageRecord
from creditdash.core import db
from creditdash.core.errors import SpendCapReached
from creditdash.core.ids import new_id
from creditdash.core.timeutil import utcnow
from tests.factories import Funded, customer_with_key, hot_ledger, usage_entry

TTL = timedelta(minutes=5)


def _row(engine: Engine, key_id: str) -> KeySpend | None:
    with db.session_scope(engine=engine, readonly=True) as session:
        row = session.get(KeySpend, key_id)
        if row is not None:
            session.expunge(row)
        return row


def _capped_hold(who: Funded, key_id: str, cap: int, amount: int, request_id: str) -> int | None:
    with db.session_scope() as session:
        return metering.reserve(
            session,
            request_id=request_id,
            account_id=who.account_id,
            amount_micros=amount,
            ttl=TTL,
            key_cap=(key_id, cap),
        )


def _settle(who: Funded, key_id: str, hold_id: int | None, price: int, request_id: str) -> None:
    with db.session_scope() as session:
        metering.settle(
            session,
            hold_id=hold_id,
            account_id=who.account_id,
            price_micros=price,
            record=usage_entry(who, key_id, request_id),
            # Without a hold (a request before the key had a cap) the price is charged whole.
            overage=hold_id is None,
        )


def _verified() -> list[str]:
    with db.session_scope(readonly=True) as session:
        return health.check(session)


def test_holds_count_against_the_cap_and_every_resolution_releases(engine: Engine) -> None:
    who, key_id = customer_with_key(engine, 10_000_000)
    # The key spent 300 before it had a cap: its row starts from the month's usage records.
    _settle(who, key_id, None, 300, "before")
    assert _row(engine, key_id) is None
    first = _capped_hold(who, key_id, 1_000, 500, "r1")
    row = _row(engine, key_id)
    assert row is not None and (row.spent_micros, row.held_micros) == (300, 500)
    # 300 spent + 500 held + 201 would pass 1000: refused, and the balance hold with it.
    with pytest.raises(SpendCapReached, match="monthly spend cap"):
        _capped_hold(who, key_id, 1_000, 201, "r2")
    with db.session_scope(readonly=True) as session:
        assert ledger.get_balance(session, who.account_id).held_micros == 500
        assert session.execute(select(KeyHold)).scalars().all()[0].hold_id == first
    # 200 exactly fits.
    second = _capped_hold(who, key_id, 1_000, 200, "r3")
    _settle(who, key_id, first, 120, "r1")
    row = _row(engine, key_id)
    assert row is not None and (row.spent_micros, row.held_micros) == (420, 200)
    with db.session_scope() as session:
        ledger.void(session, hold_id=second)
    third = _capped_hold(who, key_id, 1_000, 580, "r4")
    with db.session_scope() as session:
        assert third is not None and ledger.expire(session, hold_id=third)
    row = _row(engine, key_id)
    assert row is not None and (row.spent_micros, row.held_micros) == (420, 0)
    # A replayed hold is counted once.
    again = _capped_hold(who, key_id, 1_000, 100, "r5")
    assert _capped_hold(who, key_id, 1_000, 100, "r5") == again
    assert (_row(engine, key_id) or KeySpend()).held_micros == 100
    assert _verified() == []


def test_the_raw_settlement_counts_the_spend_of_a_key_with_a_row(engine: Engine, raw: Any) -> None:
    who, key_id = customer_with_key(engine, 10_000_000)
    hold = _capped_hold(who, key_id, 5_000_000, 1_000, "capped")
    _settle(who, key_id, hold, 1_000, "capped")
    # The cap is lifted; the key's later requests go the raw way and still count in its row,
    # so a cap set again starts from the right spend.
    hot = hot_ledger(engine)
    request_id = new_id("req")
    placed = hot.hold(
        raw,
        request_id=request_id,
        account_id=who.account_id,
        revenue_account_id=who.revenue_id,
        amount_micros=10_000,
        expires_at=utcnow() + TTL,
    )
    assert placed is not None
    assert hot.settle(
        raw,
        hold=placed,
        price_micros=7_000,
        record=usage_entry(who, key_id, request_id),
        touch_key=True,
    )
    row = _row(engine, key_id)
    assert row is not None and (row.spent_micros, row.held_micros) == (8_000, 0)
    assert _verified() == []


def test_concurrent_holds_never_pass_the_cap(engine: Engine) -> None:
    who, key_id = customer_with_key(engine, 100_000_000)
    cap, amount, callers = 10_000, 1_000, 24
    placed: list[int] = []
    refused: list[str] = []
    start = threading.Barrier(callers)

    def one(number: int) -> None:
        start.wait()
        for _attempt in range(20):
            try:
                hold = _capped_hold(who, key_id, cap, amount, f"race{number}")
            except SpendCapReached:
                refused.append(f"race{number}")
                return
            except Exception:  # a serialization failure or busy database: try again
                continue
            assert hold is not None
            placed.append(hold)
            return

    threads = [threading.Thread(target=one, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(placed) == cap // amount
    assert len(refused) == callers - cap // amount
    row = _row(engine, key_id)
    assert row is not None and row.held_micros == cap
    with db.session_scope(readonly=True) as session:
        assert ledger.get_balance(session, who.account_id).held_micros == cap
    assert _verified() == []


def test_a_new_month_starts_from_zero_and_verify_sees_a_wrong_row(engine: Engine) -> None:
    who, key_id = customer_with_key(engine, 10_000_000)
    hold = _capped_hold(who, key_id, 1_000, 900, "old")
    _settle(who, key_id, hold, 900, "old")
    with db.session_scope() as session:
        session.execute(update(KeySpend).values(period="2000-01"))
        session.execute(update(UsageRecord).values(created_at=datetime(2000, 1, 15, tzinfo=UTC)))
    # Last month's 900 no longer counts.
    assert _capped_hold(who, key_id, 1_000, 1_000, "new") is not None
    row = _row(engine, key_id)
    assert row is not None and (row.period, row.spent_micros, row.held_micros) == (
        period_of(),
        0,
        1_000,
    )
    assert _verified() == []
    with db.session_scope() as session:
        session.execute(update(KeySpend).values(held_micros=3, spent_micros=5))
    problems = _verified()
    assert f"spend of key {key_id}: held 3 != its open holds 1000" in problems
    assert f"spend of key {key_id}: spent 5 != the month's usage charges 0" in problems
