"""The ledger on SQLite and on PostgreSQL: idempotency, holds resolved once, limits, races."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from sqlmodel import col

from creditdash.billing import ledger
from creditdash.billing.models import Transfer
from creditdash.core import db
from creditdash.core.errors import (
    AlreadyResolved,
    IdempotencyConflict,
    InsufficientCredits,
    NotFound,
    ValidationFailed,
)
from creditdash.core.timeutil import utcnow
from tests.factories import Funded, funded_customer

CREDIT = 1_000_000


def balance(engine: Engine, account_id: int) -> ledger.Balance:
    with db.session_scope(engine=engine, readonly=True) as session:
        return ledger.get_balance(session, account_id)


def transfer_count(engine: Engine) -> int:
    with db.session_scope(engine=engine, readonly=True) as session:
        return int(session.execute(select(func.count()).select_from(Transfer)).scalar_one())


def assert_verified(engine: Engine) -> None:
    with db.session_scope(engine=engine, readonly=True) as session:
        assert ledger.verify(session) == []


def place_hold(engine: Engine, who: Funded, amount: int, key: str, **kwargs: object) -> int:
    with db.session_scope(engine=engine) as session:
        held = ledger.hold(
            session,
            idempotency_key=key,
            debit_account_id=who.account_id,
            credit_account_id=who.revenue_id,
            amount_micros=amount,
            code="usage",
            **kwargs,  # type: ignore[arg-type]
        )
        assert held.id is not None
        return held.id


# ---------------------------------------------------------------------------------- transfers


def test_same_key_twice_moves_money_once(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=5 * CREDIT)
    before = transfer_count(engine)
    ids = []
    for _ in range(2):
        with db.session_scope(engine=engine) as session:
            moved = ledger.transfer(
                session,
                idempotency_key="refund-42",
                debit_account_id=who.account_id,
                credit_account_id=who.revenue_id,
                amount_micros=CREDIT,
                code="debit_adjustment",
            )
            ids.append(moved.id)
    assert ids[0] == ids[1]
    assert transfer_count(engine) == before + 1
    assert balance(engine, who.account_id).posted_micros == 4 * CREDIT
    assert_verified(engine)


def test_same_key_different_amount_conflicts_and_writes_nothing(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=5 * CREDIT)
    common = {
        "idempotency_key": "k-1",
        "debit_account_id": who.account_id,
        "credit_account_id": who.revenue_id,
        "code": "debit_adjustment",
    }
    with db.session_scope(engine=engine) as session:
        ledger.transfer(session, amount_micros=CREDIT, **common)  # type: ignore[arg-type]
    before = transfer_count(engine)
    with pytest.raises(IdempotencyConflict), db.session_scope(engine=engine) as session:
        ledger.transfer(session, amount_micros=2 * CREDIT, **common)  # type: ignore[arg-type]
    assert transfer_count(engine) == before
    assert balance(engine, who.account_id).posted_micros == 4 * CREDIT
    assert_verified(engine)


@pytest.mark.parametrize("amount", [0, -1, -CREDIT, True, 1.5, "100"])
def test_bad_amounts_are_refused_and_write_nothing(engine: Engine, amount: object) -> None:
    who = funded_customer(engine, credits_micros=CREDIT)
    before = transfer_count(engine)
    with pytest.raises(ValidationFailed), db.session_scope(engine=engine) as session:
        ledger.transfer(
            session,
            idempotency_key="bad",
            debit_account_id=who.account_id,
            credit_account_id=who.revenue_id,
            amount_micros=amount,  # type: ignore[arg-type]
            code="x",
        )
    assert transfer_count(engine) == before


def test_unknown_account_is_not_found_and_writes_nothing(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=CREDIT)
    before = transfer_count(engine)
    for debit, credit in ((who.account_id, 999_999), (999_999, who.account_id)):
        with pytest.raises(NotFound), db.session_scope(engine=engine) as session:
            ledger.transfer(
                session,
                idempotency_key=f"ghost-{debit}",
                debit_account_id=debit,
                credit_account_id=credit,
                amount_micros=1,
                code="x",
            )
    assert transfer_count(engine) == before
    assert balance(engine, who.account_id).posted_micros == CREDIT
    assert_verified(engine)


def test_same_account_on_both_sides_is_refused(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=CREDIT)
    with pytest.raises(ValidationFailed), db.session_scope(engine=engine) as session:
        ledger.transfer(
            session,
            idempotency_key="self",
            debit_account_id=who.account_id,
            credit_account_id=who.account_id,
            amount_micros=1,
            code="x",
        )


def test_refusal_leaves_the_callers_other_writes_intact(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=CREDIT)
    with db.session_scope(engine=engine) as session:
        ledger.transfer(
            session,
            idempotency_key="ok",
            debit_account_id=who.account_id,
            credit_account_id=who.revenue_id,
            amount_micros=CREDIT // 2,
            code="x",
        )
        with pytest.raises(InsufficientCredits):
            ledger.transfer(
                session,
                idempotency_key="too-much",
                debit_account_id=who.account_id,
                credit_account_id=who.revenue_id,
                amount_micros=CREDIT,
                code="x",
            )
    assert balance(engine, who.account_id).posted_micros == CREDIT // 2
    assert_verified(engine)


# -------------------------------------------------------------------------------------- holds


def test_hold_beyond_available_is_refused_and_writes_nothing(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=CREDIT)
    place_hold(engine, who, 600_000, "h-1")
    before = transfer_count(engine)
    with pytest.raises(InsufficientCredits):
        place_hold(engine, who, 400_001, "h-2")
    assert transfer_count(engine) == before
    place_hold(engine, who, 400_000, "h-3")  # exactly the rest fits
    assert balance(engine, who.account_id).available_micros == 0
    assert_verified(engine)


def test_partial_post_charges_actual_and_releases_the_rest(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=10 * CREDIT)
    hold_id = place_hold(engine, who, 3 * CREDIT, "req-1")
    held = balance(engine, who.account_id)
    assert (held.posted_micros, held.held_micros, held.available_micros) == (
        10 * CREDIT,
        3 * CREDIT,
        7 * CREDIT,
    )
    with db.session_scope(engine=engine) as session:
        ledger.post(session, hold_id=hold_id, amount_micros=1_234_567)
    after = balance(engine, who.account_id)
    assert (after.posted_micros, after.held_micros) == (10 * CREDIT - 1_234_567, 0)
    assert balance(engine, who.revenue_id).posted_micros == 1_234_567
    assert_verified(engine)


def test_post_zero_is_a_recorded_free_request(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=CREDIT)
    hold_id = place_hold(engine, who, 500_000, "free")
    with db.session_scope(engine=engine) as session:
        resolution = ledger.post(session, hold_id=hold_id, amount_micros=0)
        assert resolution.kind == "post"
    assert balance(engine, who.account_id).posted_micros == CREDIT
    assert_verified(engine)


def test_posting_more_than_held_is_refused(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=10 * CREDIT)
    hold_id = place_hold(engine, who, CREDIT, "req")
    before = transfer_count(engine)
    with pytest.raises(ValidationFailed), db.session_scope(engine=engine) as session:
        ledger.post(session, hold_id=hold_id, amount_micros=CREDIT + 1)
    assert transfer_count(engine) == before
    assert balance(engine, who.account_id).held_micros == CREDIT
    assert_verified(engine)


@pytest.mark.parametrize("first", ["post", "void", "expire"])
@pytest.mark.parametrize("second", ["post", "void", "expire"])
def test_a_hold_resolves_exactly_once(engine: Engine, first: str, second: str) -> None:
    who = funded_customer(engine, credits_micros=10 * CREDIT)
    hold_id = place_hold(engine, who, 2 * CREDIT, "once")

    def resolve(kind: str) -> int:
        with db.session_scope(engine=engine) as session:
            if kind == "post":
                return ledger.post(session, hold_id=hold_id, amount_micros=CREDIT).id or 0
            if kind == "void":
                return ledger.void(session, hold_id=hold_id).id or 0
            # Expire: move the deadline into the past, then run the expirer.
            session.execute(
                update(Transfer)
                .where(col(Transfer.id) == hold_id)
                .values(expires_at=utcnow() - timedelta(minutes=1))
            )
            return ledger.expire_stale_holds(session)

    resolve(first)
    after_first = balance(engine, who.account_id)
    count = transfer_count(engine)
    if second == first and first != "expire":
        resolve(second)  # the same resolution again is a harmless replay
    elif second == "expire":
        assert resolve(second) == 0  # the expirer skips resolved holds
    else:
        with pytest.raises(AlreadyResolved):
            resolve(second)
    assert transfer_count(engine) == count
    assert balance(engine, who.account_id) == after_first
    assert_verified(engine)


def test_post_with_a_different_amount_after_post_is_refused(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=10 * CREDIT)
    hold_id = place_hold(engine, who, 2 * CREDIT, "twice")
    with db.session_scope(engine=engine) as session:
        ledger.post(session, hold_id=hold_id, amount_micros=CREDIT)
    with pytest.raises(AlreadyResolved), db.session_scope(engine=engine) as session:
        ledger.post(session, hold_id=hold_id, amount_micros=CREDIT // 2)
    assert balance(engine, who.account_id).posted_micros == 9 * CREDIT


def test_expiry_releases_only_past_due_holds_once(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=10 * CREDIT)
    stale = place_hold(engine, who, CREDIT, "stale", expires_at=utcnow() - timedelta(seconds=5))
    place_hold(engine, who, 2 * CREDIT, "fresh", expires_at=utcnow() + timedelta(minutes=5))
    with db.session_scope(engine=engine) as session:
        assert ledger.expire_stale_holds(session) == 1
    with db.session_scope(engine=engine) as session:
        assert ledger.expire_stale_holds(session) == 0
        resolution = session.execute(
            select(Transfer).where(Transfer.pending_id == stale)
        ).scalar_one()
        assert (resolution.kind, resolution.amount_micros) == ("expire", 0)
    assert balance(engine, who.account_id).held_micros == 2 * CREDIT
    assert_verified(engine)


def test_unknown_hold_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound), db.session_scope(engine=engine) as session:
        ledger.void(session, hold_id=424242)


def test_credit_limit_allows_spending_down_to_minus_the_limit(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=CREDIT)
    with db.session_scope(engine=engine) as session:
        ledger.set_credit_limit(session, account_id=who.account_id, credit_limit_micros=2 * CREDIT)
    place_hold(engine, who, 3 * CREDIT, "on-credit")
    with pytest.raises(InsufficientCredits):
        place_hold(engine, who, 1, "over")
    assert balance(engine, who.account_id).available_micros == -2 * CREDIT
    # The limit cannot be lowered below what is already committed.
    with pytest.raises(InsufficientCredits), db.session_scope(engine=engine) as session:
        ledger.set_credit_limit(session, account_id=who.account_id, credit_limit_micros=CREDIT)
    assert_verified(engine)


def test_verify_catches_a_tampered_balance(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=CREDIT)
    assert_verified(engine)
    with db.session_scope(engine=engine) as session:
        session.execute(
            text("UPDATE ledger_accounts SET credits_posted = credits_posted + 1 WHERE id = :id"),
            {"id": who.account_id},
        )
    with db.session_scope(engine=engine, readonly=True) as session:
        problems = ledger.verify(session)
    assert any("posted debits" in p for p in problems)
    assert any(f"customer:{who.customer_id}" in p for p in problems)


def test_database_check_backs_the_limit(engine: Engine) -> None:
    """Even a hand-written UPDATE cannot push a prepaid account below zero."""
    who = funded_customer(engine, credits_micros=CREDIT)
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), db.session_scope(engine=engine) as session:
        session.execute(
            text("UPDATE ledger_accounts SET debits_posted = :d WHERE id = :id"),
            {"d": 2 * CREDIT, "id": who.account_id},
        )


# -------------------------------------------------------------------------------- concurrency


def _race(engine_url: str, workers: int, work: Callable[[Engine, int], object]) -> list[object]:
    """Run work(engine, i) in `workers` threads, each on its own connection, released together."""
    engine = db.make_engine(engine_url, poolclass=NullPool)
    barrier = threading.Barrier(workers)
    results: list[object] = [None] * workers

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(engine, i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    engine.dispose()
    return results


def test_fifty_concurrent_holds_against_a_balance_for_ten(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    who = funded_customer(engine, credits_micros=10 * CREDIT)

    def work(own_engine: Engine, i: int) -> str:
        with db.session_scope(engine=own_engine) as session:
            ledger.hold(
                session,
                idempotency_key=f"race-{i}",
                debit_account_id=who.account_id,
                credit_account_id=who.revenue_id,
                amount_micros=CREDIT,
                code="usage",
            )
        return "held"

    results = _race(database_url, 50, work)
    unexpected = [r for r in results if r != "held" and not isinstance(r, InsufficientCredits)]
    assert unexpected == []
    assert results.count("held") == 10
    final = balance(engine, who.account_id)
    assert (final.held_micros, final.available_micros) == (10 * CREDIT, 0)
    assert_verified(engine)
    # The operator's check agrees, through the installed command.
    env = {**os.environ, "CREDITDASH_DATABASE_URL": database_url}
    env["CREDITDASH_DATA_DIR"] = str(tmp_path / "data")
    cli = Path(sys.executable).parent / "creditdash"
    done = subprocess.run([str(cli), "ledger", "verify"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "ledger ok" in done.stdout


def test_concurrent_repeats_of_one_key_apply_once(engine: Engine, database_url: str) -> None:
    who = funded_customer(engine, credits_micros=10 * CREDIT)

    def work(own_engine: Engine, _i: int) -> int:
        with db.session_scope(engine=own_engine) as session:
            moved = ledger.transfer(
                session,
                idempotency_key="webhook-evt-1",
                debit_account_id=who.revenue_id,
                credit_account_id=who.account_id,
                amount_micros=CREDIT,
                code="topup",
            )
            return int(moved.id or 0)

    results = _race(database_url, 12, work)
    assert all(isinstance(r, int) for r in results), results
    assert len(set(results)) == 1
    assert balance(engine, who.account_id).posted_micros == 11 * CREDIT
    assert_verified(engine)


def test_concurrent_resolutions_of_one_hold_apply_once(engine: Engine, database_url: str) -> None:
    who = funded_customer(engine, credits_micros=10 * CREDIT)
    hold_id = place_hold(engine, who, 4 * CREDIT, "contested")

    def work(own_engine: Engine, i: int) -> str:
        with db.session_scope(engine=own_engine) as session:
            if i % 2:
                ledger.void(session, hold_id=hold_id)
                return "void"
            ledger.post(session, hold_id=hold_id, amount_micros=CREDIT)
            return "post"

    results = _race(database_url, 12, work)
    winners = {r for r in results if isinstance(r, str)}
    assert len(winners) == 1, results
    losers = [r for r in results if not isinstance(r, str)]
    assert all(isinstance(r, AlreadyResolved) for r in losers), losers
    with db.session_scope(engine=engine, readonly=True) as session:
        count = session.execute(
            select(func.count()).select_from(Transfer).where(Transfer.pending_id == hold_id)
        ).scalar_one()
        assert count == 1
    expected = 9 * CREDIT if winners == {"post"} else 10 * CREDIT
    assert balance(engine, who.account_id).posted_micros == expected
    assert_verified(engine)


def test_opposite_transfers_do_not_deadlock(engine: Engine, database_url: str) -> None:
    a = funded_customer(engine, credits_micros=100 * CREDIT)
    b = funded_customer(engine, credits_micros=100 * CREDIT)

    def work(own_engine: Engine, i: int) -> str:
        debit, credit = (a, b) if i % 2 else (b, a)
        with db.session_scope(engine=own_engine) as session:
            ledger.transfer(
                session,
                idempotency_key=f"swap-{i}",
                debit_account_id=debit.account_id,
                credit_account_id=credit.account_id,
                amount_micros=CREDIT,
                code="move",
            )
        return "ok"

    assert _race(database_url, 20, work) == ["ok"] * 20
    assert balance(engine, a.account_id).posted_micros == 100 * CREDIT
    assert_verified(engine)


def test_reserved_keys_are_refused(engine: Engine) -> None:
    """No caller key can take the slot of a hold's resolution."""
    who = funded_customer(engine, credits_micros=CREDIT)
    hold_id = place_hold(engine, who, 1000, "h")
    with pytest.raises(ValidationFailed, match="reserved"), db.session_scope(engine=engine) as s:
        ledger.transfer(
            s,
            idempotency_key=f"ledger:resolve:{hold_id}",
            debit_account_id=who.account_id,
            credit_account_id=who.revenue_id,
            amount_micros=1,
            code="x",
        )
    with db.session_scope(engine=engine) as session:
        ledger.void(session, hold_id=hold_id)
    assert_verified(engine)


def test_same_key_with_another_memo_conflicts(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=CREDIT)
    common = {
        "idempotency_key": "memo-key",
        "debit_account_id": who.account_id,
        "credit_account_id": who.revenue_id,
        "amount_micros": 10,
        "code": "x",
    }
    with db.session_scope(engine=engine) as session:
        ledger.transfer(session, memo="first reason", **common)  # type: ignore[arg-type]
    with pytest.raises(IdempotencyConflict), db.session_scope(engine=engine) as session:
        ledger.transfer(session, memo="other reason", **common)  # type: ignore[arg-type]


def test_periodic_expiry_resolves_each_stale_hold_in_its_own_transaction(engine: Engine) -> None:
    from creditdash.jobs import expire_holds_once as expire_once

    a = funded_customer(engine, credits_micros=CREDIT)
    b = funded_customer(engine, credits_micros=CREDIT)
    past = utcnow() - timedelta(seconds=1)
    for who, key in ((b, "b-stale"), (a, "a-stale")):
        place_hold(engine, who, 1000, key, expires_at=past)
    place_hold(engine, a, 1000, "a-live")
    assert expire_once() == 2
    assert expire_once() == 0
    assert balance(engine, a.account_id).held_micros == 1000
    assert balance(engine, b.account_id).held_micros == 0
    assert_verified(engine)
