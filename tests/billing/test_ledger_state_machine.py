"""A Hypothesis state machine: random grants, debits, holds, posts, voids, expiries and limit
changes against an in-memory model of one customer, checking every invariant after each step."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col

from creditdash.billing import ledger
from creditdash.billing.models import Transfer
from creditdash.core import db
from creditdash.core.errors import AlreadyResolved, InsufficientCredits
from creditdash.core.timeutil import utcnow
from tests.factories import funded_customer

amounts = st.integers(min_value=1, max_value=5_000_000)
_keys = itertools.count()


@dataclass
class Model:
    posted: int = 0
    holds: dict[int, int] = field(default_factory=dict)  # open hold id -> amount
    resolved: dict[int, tuple[str, int]] = field(default_factory=dict)
    limit: int = 0

    @property
    def held(self) -> int:
        return sum(self.holds.values())

    @property
    def available(self) -> int:
        return self.posted - self.held


def ledger_machine(engine: Engine) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        holds = Bundle("holds")

        def __init__(self) -> None:
            super().__init__()
            self.who = funded_customer(engine, credits_micros=0, name="Machine")
            self.model = Model()

        def _key(self) -> str:
            return f"sm-{next(_keys)}"

        @rule(amount=amounts)
        def grant(self, amount: int) -> None:
            with db.session_scope(engine=engine) as session:
                ledger.transfer(
                    session,
                    idempotency_key=self._key(),
                    debit_account_id=ledger.platform_account_id(session, ledger.ADJUSTMENTS),
                    credit_account_id=self.who.account_id,
                    amount_micros=amount,
                    code="grant",
                )
            self.model.posted += amount

        @rule(amount=amounts)
        def debit(self, amount: int) -> None:
            fits = self.model.available - amount >= -self.model.limit
            try:
                with db.session_scope(engine=engine) as session:
                    ledger.transfer(
                        session,
                        idempotency_key=self._key(),
                        debit_account_id=self.who.account_id,
                        credit_account_id=self.who.revenue_id,
                        amount_micros=amount,
                        code="debit_adjustment",
                    )
            except InsufficientCredits:
                assert not fits
                return
            assert fits
            self.model.posted -= amount

        @rule(target=holds, amount=amounts)
        def hold(self, amount: int) -> int:
            fits = self.model.available - amount >= -self.model.limit
            try:
                with db.session_scope(engine=engine) as session:
                    held = ledger.hold(
                        session,
                        idempotency_key=self._key(),
                        debit_account_id=self.who.account_id,
                        credit_account_id=self.who.revenue_id,
                        amount_micros=amount,
                        code="usage",
                    )
            except InsufficientCredits:
                assert not fits
                return -1
            assert fits
            assert held.id is not None
            self.model.holds[held.id] = amount
            return held.id

        def _resolve(self, hold_id: int, kind: str, fraction: int) -> None:
            if hold_id < 0:
                return
            amount = self.model.holds.get(hold_id, 0) * fraction // 100 if kind == "post" else 0
            try:
                with db.session_scope(engine=engine) as session:
                    if kind == "post":
                        ledger.post(session, hold_id=hold_id, amount_micros=amount)
                    elif kind == "void":
                        ledger.void(session, hold_id=hold_id)
                    else:
                        session.execute(
                            update(Transfer)
                            .where(col(Transfer.id) == hold_id)
                            .values(expires_at=utcnow() - timedelta(seconds=1))
                        )
                        expired = ledger.expire_stale_holds(session)
                        assert expired == (1 if hold_id in self.model.holds else 0)
            except AlreadyResolved:
                assert hold_id not in self.model.holds
                assert self.model.resolved[hold_id] != (kind, amount)
                return
            if hold_id in self.model.holds:
                self.model.posted -= amount
                del self.model.holds[hold_id]
                self.model.resolved[hold_id] = (kind, amount)

        @rule(hold_id=holds, fraction=st.integers(min_value=0, max_value=100))
        def post(self, hold_id: int, fraction: int) -> None:
            self._resolve(hold_id, "post", fraction)

        @rule(hold_id=holds)
        def void(self, hold_id: int) -> None:
            self._resolve(hold_id, "void", 0)

        @rule(hold_id=consumes(holds))
        def expire(self, hold_id: int) -> None:
            self._resolve(hold_id, "expire", 0)

        @rule(limit=st.integers(min_value=0, max_value=3_000_000))
        def set_limit(self, limit: int) -> None:
            fits = self.model.available >= -limit
            try:
                with db.session_scope(engine=engine) as session:
                    ledger.set_credit_limit(
                        session, account_id=self.who.account_id, credit_limit_micros=limit
                    )
            except InsufficientCredits:
                assert not fits
                return
            assert fits
            self.model.limit = limit

        @invariant()
        def matches_model_and_verifies(self) -> None:
            with db.session_scope(engine=engine, readonly=True) as session:
                balance = ledger.get_balance(session, self.who.account_id)
                assert balance.posted_micros == self.model.posted
                assert balance.held_micros == self.model.held
                assert balance.available_micros >= -self.model.limit
                assert ledger.verify(session) == []

    return LedgerMachine


def test_ledger_state_machine(engine: Engine, request: pytest.FixtureRequest) -> None:
    backend = request.node.callspec.params["database_url"]
    examples = 40 if backend == "sqlite" else 25
    run_state_machine_as_test(
        ledger_machine(engine),
        settings=settings(
            max_examples=examples,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            print_blob=True,
        ),
    )
