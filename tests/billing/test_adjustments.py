"""Operators' manual adjustments (billing/adjustments.py): audited, and within the balance."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from creditdash.billing import balances, ledger, onboarding
from creditdash.billing.adjustments import debit_credits
from creditdash.core import db
from creditdash.core.audit import CLI, AuditEntry
from creditdash.core.errors import InsufficientCredits


def test_debit_adjustment_is_audited_and_cannot_pass_the_limit(sqlite_engine: Engine) -> None:
    with db.session_scope(engine=sqlite_engine) as session:
        customer = onboarding.create_customer(
            session, name="D", email="d@d.example.com", actor=CLI, opening_credits_micros=5_000_000
        )
    with db.session_scope(engine=sqlite_engine) as session:
        debit_credits(
            session, customer_id=customer.id, amount_micros=2_000_000,
            reason="refund of a duplicate grant", actor=CLI, idempotency_key="d-1",
        )  # fmt: skip
    with pytest.raises(InsufficientCredits), db.session_scope(engine=sqlite_engine) as session:
        debit_credits(
            session, customer_id=customer.id, amount_micros=3_000_001,
            reason="too much", actor=CLI, idempotency_key="d-2",
        )  # fmt: skip
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        assert balances.customer_balance(session, customer.id).posted_micros == 3_000_000
        entry = session.execute(
            select(AuditEntry).where(AuditEntry.action == "credits.debit")
        ).scalar_one()
        assert json.loads(entry.before_json or "")["balance"] == "5.000000"
        assert json.loads(entry.after_json or "")["balance"] == "3.000000"
        assert ledger.verify(session) == []
