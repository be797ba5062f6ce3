"""Usage revenue in shards: each customer's charges credit its own shard, verify() checks each
shard against its customers' usage records, and migration 0023 moves old charges to their shard."""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from creditdash.billing import health, ledger, metering
from creditdash.billing.models import LedgerAccount
from creditdash.core import db
from creditdash.core.ids import new_id
from creditdash.core.timeutil import utcnow
from tests.factories import Funded, customer_with_key, hot_ledger, usage_entry


def _shard_balances(engine: Engine) -> dict[str, int]:
    with db.session_scope(engine=engine, readonly=True) as session:
        rows = session.execute(
            select(
                LedgerAccount.code, LedgerAccount.credits_posted - LedgerAccount.debits_posted
            ).where(LedgerAccount.code.in_(ledger.USAGE_REVENUE_CODES))  # type: ignore[arg-type]  # type: ignore[attr-defined]
        ).all()
        return {code: int(net) for code, net in rows}


def _charge(engine: Engine, who: Funded, key_id: str, price: int) -> None:
    """One request through the ledger path: hold 2x the price, settle at the price."""
    request_id = new_id("req")
    with db.session_scope(engine=engine) as session:
        hold_id = metering.reserve(
            session,
            request_id=request_id,
            account_id=who.account_id,
            amount_micros=2 * price,
            ttl=timedelta(minutes=5),
        )
        metering.settle(
            session,
            hold_id=hold_id,
            account_id=who.account_id,
            price_micros=price,
            record=usage_entry(who, key_id, request_id),
        )


def _two_customers_in_different_shards(engine: Engine) -> list[tuple[Funded, str]]:
    made = [customer_with_key(engine, 50_000_000) for _ in range(2)]
    shards = {who.account_id % ledger.USAGE_REVENUE_SHARDS for who, _ in made}
    assert len(shards) == 2
    return made


def test_each_customer_credits_the_shard_of_its_own_account(engine: Engine) -> None:
    (first, first_key), (second, second_key) = _two_customers_in_different_shards(engine)
    _charge(engine, first, first_key, 3_000_001)
    _charge(engine, second, second_key, 250)
    balances = _shard_balances(engine)
    first_code = ledger.usage_revenue_code(first.account_id % ledger.USAGE_REVENUE_SHARDS)
    second_code = ledger.usage_revenue_code(second.account_id % ledger.USAGE_REVENUE_SHARDS)
    assert balances[first_code] == 3_000_001
    assert balances[second_code] == 250
    assert sum(balances.values()) == 3_000_251
    # The factory's revenue id is the customer's shard, which the hot path also credits.
    assert first.revenue_id != second.revenue_id
    with db.session_scope(engine=engine, readonly=True) as session:
        assert health.check(session) == []


def test_the_raw_hot_path_credits_the_same_shard(engine: Engine, raw: Any) -> None:
    who, key_id = customer_with_key(engine, 10_000_000)
    hot = hot_ledger(engine)
    request_id = new_id("req")
    placed = hot.hold(
        raw,
        request_id=request_id,
        account_id=who.account_id,
        revenue_account_id=who.revenue_id,
        amount_micros=1_000_000,
        expires_at=utcnow() + timedelta(minutes=5),
    )
    assert placed is not None
    settled = hot.settle(
        raw,
        hold=placed,
        price_micros=400_000,
        record=usage_entry(who, key_id, request_id),
        touch_key=False,
    )
    assert settled is not None
    code = ledger.usage_revenue_code(who.account_id % ledger.USAGE_REVENUE_SHARDS)
    assert _shard_balances(engine)[code] == 400_000
    with db.session_scope(engine=engine, readonly=True) as session:
        assert health.check(session) == []


def test_verify_names_a_shard_that_does_not_match_its_customers_charges(engine: Engine) -> None:
    (first, first_key), (second, _key) = _two_customers_in_different_shards(engine)
    _charge(engine, first, first_key, 1_000)
    first_code = ledger.usage_revenue_code(first.account_id % ledger.USAGE_REVENUE_SHARDS)
    second_code = ledger.usage_revenue_code(second.account_id % ledger.USAGE_REVENUE_SHARDS)
    # Move the charge to the wrong shard behind the ledger's back (both sides, so the totals
    # and cached balances still add up: only the shard check can see it).
    with db.session_scope(engine=engine) as session:
        for code, delta in ((first_code, -1_000), (second_code, 1_000)):
            session.execute(
                update(LedgerAccount)
                .where(LedgerAccount.code == code)  # type: ignore[arg-type]
                .values(credits_posted=LedgerAccount.credits_posted + delta)
            )
    with db.session_scope(engine=engine, readonly=True) as session:
        problems = health.check(session)
    assert f"{first_code}: holds 0 micros, its customers' usage charged 1000" in problems
    assert f"{second_code}: holds 1000 micros, its customers' usage charged 0" in problems


def test_migration_0023_moves_old_charges_to_their_shards_and_back(
    engine: Engine, database_url: str
) -> None:
    customers = _two_customers_in_different_shards(engine)
    for (who, key_id), price in zip(customers, (7_000, 900), strict=True):
        _charge(engine, who, key_id, price)
    before = _shard_balances(engine)
    migration = importlib.import_module("creditdash.migrations.versions.0023_revenue_shards")
    engine.dispose()
    db.downgrade(database_url, migration.down_revision)
    # Downgraded: every charge is in shard 0, the shards without history are closed.
    after_down = _shard_balances(engine)
    assert after_down[ledger.USAGE_REVENUE] == 7_900
    assert sum(after_down.values()) == 7_900
    db.upgrade(database_url)
    engine.dispose()
    assert _shard_balances(engine) == before
    with db.session_scope(engine=engine, readonly=True) as session:
        assert health.check(session) == []
