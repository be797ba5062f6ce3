"""The raw-connection hold and settlement (billing/hotpath.py) on SQLite and on PostgreSQL.

They must leave exactly the rows the SQLAlchemy path (ledger.hold, metering.settle) leaves, refuse
by row count, and write nothing when they hand an unusual case back to that path.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from creditdash.billing import ledger, metering
from creditdash.billing.hotpath import PlacedHold
from creditdash.billing.models import Transfer, UsageRecord
from creditdash.core import db
from creditdash.core.errors import InsufficientCredits
from creditdash.core.ids import new_id
from creditdash.core.timeutil import utcnow
from tests.factories import Funded, customer_with_key, hot_ledger
from tests.factories import usage_entry as entry

CREDIT = 1_000_000
TTL = timedelta(minutes=15)


def snapshot(engine: Engine, who: Funded, request_id: str) -> dict[str, Any]:
    """Everything a request left behind, without ids, accounts and timestamps."""
    with db.session_scope(engine=engine, readonly=True) as session:
        rows = session.execute(
            select(Transfer).where(Transfer.reference == request_id).order_by(Transfer.id)
        ).scalars()
        transfers = [
            (t.kind, t.amount_micros, t.code, t.reference == request_id, t.memo,
             t.pending_id is not None, t.idempotency_key.replace(request_id, "R").split(":")[0],
             t.expires_at is not None, t.actor_user_id)
            for t in rows
        ]  # fmt: skip
        for t in session.execute(
            select(Transfer).where(Transfer.reference == request_id)
        ).scalars():
            assert t.created_at.tzinfo is not None
            assert abs(t.created_at - utcnow()) < timedelta(minutes=1)
        record = session.get(UsageRecord, request_id)
        assert record is not None
        assert abs(record.created_at - utcnow()) < timedelta(minutes=1)
        usage = {
            name: getattr(record, name)
            for name in (
                "price_micros", "unbilled_micros", "balance_after_micros", "prompt_tokens",
                "completion_tokens", "stream", "status", "usage_source", "attempts_json",
                "ttfb_ms", "upstream_cost_micros",
            )
        }  # fmt: skip
        usage["has_hold"] = record.hold_id is not None
        balance = ledger.get_balance(session, who.account_id)
    return {"transfers": transfers, "usage": usage, "balance": balance}


def test_hold_and_settle_leave_what_the_ledger_path_leaves(engine: Engine, raw: Any) -> None:
    hot = hot_ledger(engine)
    old_who, old_key = customer_with_key(engine, 5 * CREDIT)
    new_who, new_key = customer_with_key(engine, 5 * CREDIT)
    old_id, new_id_ = new_id("req"), new_id("req")

    with db.session_scope(engine=engine) as session:
        hold_id = metering.reserve(
            session, request_id=old_id, account_id=old_who.account_id,
            amount_micros=2 * CREDIT, ttl=TTL,
        )  # fmt: skip
    with db.session_scope(engine=engine) as session:
        metering.settle(
            session, hold_id=hold_id, account_id=old_who.account_id, price_micros=700_000,
            record=entry(old_who, old_key, old_id), touch_key=True,
        )  # fmt: skip

    placed = hot.hold(
        raw, request_id=new_id_, account_id=new_who.account_id,
        revenue_account_id=new_who.revenue_id, amount_micros=2 * CREDIT,
        expires_at=utcnow() + TTL,
    )  # fmt: skip
    assert placed is not None
    with db.session_scope(engine=engine, readonly=True) as session:
        held = ledger.get_transfer(session, placed.id)
        assert (held.kind, held.amount_micros, held.idempotency_key) == (
            "pending",
            2 * CREDIT,
            f"req:{new_id_}",
        )
        assert ledger.get_balance(session, new_who.account_id).held_micros == 2 * CREDIT
    stored = hot.settle(
        raw, hold=placed, price_micros=700_000, record=entry(new_who, new_key, new_id_),
        touch_key=True,
    )  # fmt: skip
    assert stored is not None and stored.price_micros == 700_000

    assert snapshot(engine, old_who, old_id) == snapshot(engine, new_who, new_id_)
    with db.session_scope(engine=engine, readonly=True) as session:
        assert ledger.verify(session) == []
        assert ledger.open_hold_count(session) == 0


def test_a_hold_that_does_not_fit_matches_no_row_and_writes_nothing(
    engine: Engine, raw: Any
) -> None:
    hot = hot_ledger(engine)
    who, _key = customer_with_key(engine, CREDIT)
    with db.session_scope(engine=engine, readonly=True) as session:
        before = session.execute(select(func.count()).select_from(Transfer)).scalar_one()
    refused = hot.hold(
        raw, request_id=new_id("req"), account_id=who.account_id,
        revenue_account_id=who.revenue_id, amount_micros=CREDIT + 1, expires_at=utcnow() + TTL,
    )  # fmt: skip
    assert refused is None
    exact = hot.hold(
        raw, request_id=new_id("req"), account_id=who.account_id,
        revenue_account_id=who.revenue_id, amount_micros=CREDIT, expires_at=utcnow() + TTL,
    )  # fmt: skip
    assert exact is not None  # exactly the balance fits
    with db.session_scope(engine=engine, readonly=True) as session:
        after = session.execute(select(func.count()).select_from(Transfer)).scalar_one()
        assert after == before + 1
        balance = ledger.get_balance(session, who.account_id)
        assert balance.available_micros == 0
        assert ledger.verify(session) == []
    # The fallback then says what the refusal means.
    with pytest.raises(InsufficientCredits), db.session_scope(engine=engine) as session:
        metering.reserve(
            session, request_id=new_id("req"), account_id=who.account_id, amount_micros=1,
            ttl=TTL,
        )  # fmt: skip


def test_the_same_request_id_twice_holds_once(engine: Engine, raw: Any) -> None:
    hot = hot_ledger(engine)
    who, _key = customer_with_key(engine, 5 * CREDIT)
    request_id = new_id("req")
    args = dict(
        request_id=request_id, account_id=who.account_id, revenue_account_id=who.revenue_id,
        amount_micros=CREDIT, expires_at=utcnow() + TTL,
    )  # fmt: skip
    first = hot.hold(raw, **args)  # type: ignore[arg-type]
    assert first is not None
    assert hot.hold(raw, **args) is None  # type: ignore[arg-type]
    with db.session_scope(engine=engine) as session:
        # The ledger recognises the key as a replay of the same hold.
        assert metering.reserve(
            session, request_id=request_id, account_id=who.account_id, amount_micros=CREDIT,
            ttl=TTL,
        ) == first.id  # fmt: skip
    with db.session_scope(engine=engine, readonly=True) as session:
        assert ledger.get_balance(session, who.account_id).held_micros == CREDIT
        assert ledger.verify(session) == []


def test_settling_a_resolved_hold_or_above_it_is_handed_back(engine: Engine, raw: Any) -> None:
    hot = hot_ledger(engine)
    who, key_id = customer_with_key(engine, 5 * CREDIT)
    request_id = new_id("req")
    placed = hot.hold(
        raw, request_id=request_id, account_id=who.account_id,
        revenue_account_id=who.revenue_id, amount_micros=CREDIT, expires_at=utcnow() + TTL,
    )  # fmt: skip
    assert placed is not None
    assert hot.settle(
        raw, hold=placed, price_micros=CREDIT + 1, record=entry(who, key_id, request_id),
        touch_key=False,
    ) is None  # fmt: skip
    with db.session_scope(engine=engine) as session:
        assert ledger.expire(session, hold_id=placed.id)
    assert hot.settle(
        raw, hold=placed, price_micros=500_000, record=entry(who, key_id, request_id),
        touch_key=False,
    ) is None  # fmt: skip
    with db.session_scope(engine=engine, readonly=True) as session:
        assert session.get(UsageRecord, request_id) is None  # nothing written
        assert ledger.get_balance(session, who.account_id).posted_micros == 5 * CREDIT
    # The fallback charges the expired hold's price directly, once.
    with db.session_scope(engine=engine) as session:
        stored = metering.settle(
            session, hold_id=placed.id, account_id=who.account_id, price_micros=500_000,
            record=entry(who, key_id, request_id),
        )  # fmt: skip
        assert stored.price_micros == 500_000
    with db.session_scope(engine=engine, readonly=True) as session:
        assert ledger.get_balance(session, who.account_id).posted_micros == 4_500_000
        assert ledger.verify(session) == []


def test_a_hold_resolves_once_even_from_the_hot_path(engine: Engine, raw: Any) -> None:
    hot = hot_ledger(engine)
    who, key_id = customer_with_key(engine, 5 * CREDIT)
    request_id = new_id("req")
    placed = hot.hold(
        raw, request_id=request_id, account_id=who.account_id,
        revenue_account_id=who.revenue_id, amount_micros=CREDIT, expires_at=utcnow() + TTL,
    )  # fmt: skip
    assert isinstance(placed, PlacedHold)
    assert hot.settle(
        raw, hold=placed, price_micros=300_000, record=entry(who, key_id, request_id),
        touch_key=False,
    ) is not None  # fmt: skip
    again = entry(who, key_id, new_id("req"))
    assert hot.settle(raw, hold=placed, price_micros=300_000, record=again, touch_key=False) is None
    with db.session_scope(engine=engine, readonly=True) as session:
        assert ledger.get_balance(session, who.account_id).posted_micros == 4_700_000
        assert ledger.verify(session) == []


def test_a_step_that_fails_after_the_first_undoes_the_whole_transaction(
    engine: Engine, raw: Any
) -> None:
    # On PostgreSQL each transaction is one statement whose later steps are gated on the earlier
    # ones; a failure after the first UPDATE must still leave nothing behind.
    hot = hot_ledger(engine)
    who, key_id = customer_with_key(engine, 5 * CREDIT)
    with db.session_scope(engine=engine, readonly=True) as session:
        transfers = session.execute(select(func.count()).select_from(Transfer)).scalar_one()
    # The customer's UPDATE matches (its id is the lower), the missing revenue account's not.
    assert hot.hold(
        raw, request_id=new_id("req"), account_id=who.account_id,
        revenue_account_id=10**9, amount_micros=CREDIT, expires_at=utcnow() + TTL,
    ) is None  # fmt: skip
    with db.session_scope(engine=engine, readonly=True) as session:
        assert ledger.get_balance(session, who.account_id).held_micros == 0
        assert session.execute(select(func.count()).select_from(Transfer)).scalar_one() == transfers

    request_id = new_id("req")
    placed = hot.hold(
        raw, request_id=request_id, account_id=who.account_id,
        revenue_account_id=who.revenue_id, amount_micros=CREDIT, expires_at=utcnow() + TTL,
    )  # fmt: skip
    assert placed is not None
    # A hold the accounts do not cover (this process's record of it is wrong): the resolution
    # is inserted first, then the releases find less than the hold.
    wrong = PlacedHold(
        id=placed.id, amount_micros=placed.amount_micros + 1,
        debit_account_id=placed.debit_account_id, credit_account_id=placed.credit_account_id,
        reference=placed.reference,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="holds less than hold"):
        hot.settle(
            raw, hold=wrong, price_micros=300_000, record=entry(who, key_id, request_id),
            touch_key=True,
        )  # fmt: skip
    with db.session_scope(engine=engine, readonly=True) as session:
        assert session.get(UsageRecord, request_id) is None
        assert ledger.get_balance(session, who.account_id).held_micros == CREDIT
        assert ledger.get_balance(session, who.account_id).posted_micros == 5 * CREDIT
        assert ledger.verify(session) == []
    # Nothing was claimed: the real hold still settles.
    assert hot.settle(
        raw, hold=placed, price_micros=300_000, record=entry(who, key_id, request_id),
        touch_key=True,
    ) is not None  # fmt: skip
    with db.session_scope(engine=engine, readonly=True) as session:
        assert ledger.get_balance(session, who.account_id).posted_micros == 4_700_000
        assert ledger.verify(session) == []


def test_a_credit_account_with_the_lower_id_is_updated_first(engine: Engine, raw: Any) -> None:
    # The other order of the two UPDATEs (on PostgreSQL, the other statement): another
    # customer's account, created earlier, stands in for the revenue account.
    hot = hot_ledger(engine)
    payee, _ = customer_with_key(engine, 0)
    who, key_id = customer_with_key(engine, CREDIT)
    assert payee.account_id < who.account_id
    args = dict(
        account_id=who.account_id, revenue_account_id=payee.account_id, expires_at=utcnow() + TTL
    )
    assert hot.hold(raw, request_id=new_id("req"), amount_micros=CREDIT + 1, **args) is None  # type: ignore[arg-type]
    request_id = new_id("req")
    placed = hot.hold(raw, request_id=request_id, amount_micros=CREDIT, **args)  # type: ignore[arg-type]
    assert placed is not None
    assert hot.settle(
        raw, hold=placed, price_micros=400_000, record=entry(who, key_id, request_id),
        touch_key=False,
    ) is not None  # fmt: skip
    with db.session_scope(engine=engine, readonly=True) as session:
        assert ledger.get_balance(session, who.account_id).posted_micros == 600_000
        assert ledger.get_balance(session, who.account_id).held_micros == 0
        assert ledger.get_balance(session, payee.account_id).posted_micros == 400_000
        record = session.get(UsageRecord, request_id)
        assert record is not None and record.balance_after_micros == 600_000
        assert ledger.verify(session) == []
