"""Customers with their owner, ledger account and audited opening credit; API keys."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from creditdash.accounts import api_keys, customers
from creditdash.accounts.models import ApiKey, Customer, Membership, User
from creditdash.billing import balances, ledger, onboarding
from creditdash.core import db
from creditdash.core.audit import CLI, AuditEntry
from creditdash.core.errors import Conflict, NotFound, ValidationFailed


def counts(engine: Engine) -> tuple[int, ...]:
    with db.session_scope(engine=engine, readonly=True) as session:
        return tuple(
            int(session.execute(select(func.count()).select_from(model)).scalar_one())
            for model in (Customer, User, Membership, AuditEntry)
        )


def test_create_customer_with_opening_credit(sqlite_engine: Engine) -> None:
    with db.session_scope(engine=sqlite_engine) as session:
        customer = onboarding.create_customer(
            session,
            name="Müller GmbH",
            email="Billing@Mueller.example.com",
            actor=CLI,
            opening_credits_micros=12_345_678,
        )
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        assert balances.customer_balance(session, customer.id).as_json() == {
            "balance": "12.345678",
            "held": "0.000000",
            "available": "12.345678",
        }
        owner_role = customers.customers_of_user(
            session,
            session.execute(
                select(User.id).where(User.email == "billing@mueller.example.com")
            ).scalar_one(),
        )
        assert [(c.id, role) for c, role in owner_role] == [(customer.id, "owner")]
        actions = [
            (e.action, e.actor_label, json.loads(e.after_json or "{}").get("balance"))
            for e in session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars()
        ]
        assert actions == [("customer.create", "cli", None), ("credits.grant", "cli", "12.345678")]
        assert ledger.verify(session) == []


@pytest.mark.parametrize(
    ("name", "email", "credits", "error"),
    [
        ("", "a@example.com", 0, ValidationFailed),
        ("x" * 201, "a@example.com", 0, ValidationFailed),
        ("Acme", "bad@", 0, ValidationFailed),
        ("Acme", "a@example.com", -1, ValidationFailed),
        ("Acme", "a@example.com", 10**16, ValidationFailed),
        ("Acme", "a@example.com", True, ValidationFailed),
    ],
)
def test_bad_customer_input_writes_nothing(
    sqlite_engine: Engine, name: str, email: str, credits: int, error: type[Exception]
) -> None:
    before = counts(sqlite_engine)
    with pytest.raises(error), db.session_scope(engine=sqlite_engine) as session:
        onboarding.create_customer(
            session, name=name, email=email, actor=CLI, opening_credits_micros=credits
        )
    assert counts(sqlite_engine) == before


def test_duplicate_customer_email_regardless_of_case(sqlite_engine: Engine) -> None:
    with db.session_scope(engine=sqlite_engine) as session:
        onboarding.create_customer(session, name="Acme", email="ops@acme.example.com", actor=CLI)
    before = counts(sqlite_engine)
    with pytest.raises(Conflict), db.session_scope(engine=sqlite_engine) as session:
        onboarding.create_customer(session, name="Acme 2", email="OPS@acme.example.com", actor=CLI)
    assert counts(sqlite_engine) == before


def test_api_key_is_shown_once_and_stored_hashed(sqlite_engine: Engine) -> None:
    with db.session_scope(engine=sqlite_engine) as session:
        customer = onboarding.create_customer(
            session, name="Acme", email="k@acme.example.com", actor=CLI
        )
        key, raw = api_keys.create_api_key(session, customer_id=customer.id, name="prod")
    assert raw.startswith("sk-cd-") and len(raw) > 40
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        stored = session.get(ApiKey, key.id)
        assert stored is not None
        assert raw not in (stored.key_hash, stored.display_prefix)
        assert raw.startswith(stored.display_prefix)
        found = api_keys.find_active_key(session, raw)
        assert found is not None and found.customer_id == customer.id
        assert api_keys.find_active_key(session, raw[:-1]) is None
        assert api_keys.find_active_key(session, "") is None


def test_revoked_key_stops_and_other_customers_cannot_revoke(sqlite_engine: Engine) -> None:
    with db.session_scope(engine=sqlite_engine) as session:
        a = onboarding.create_customer(session, name="A", email="a@a.example.com", actor=CLI)
        b = onboarding.create_customer(session, name="B", email="b@b.example.com", actor=CLI)
        key, raw = api_keys.create_api_key(session, customer_id=a.id, name="k")
    with pytest.raises(NotFound), db.session_scope(engine=sqlite_engine) as session:
        api_keys.revoke_api_key(session, customer_id=b.id, key_id=key.id)
    with db.session_scope(engine=sqlite_engine) as session:
        assert api_keys.find_active_key(session, raw) is not None
        api_keys.revoke_api_key(session, customer_id=a.id, key_id=key.id)
        api_keys.revoke_api_key(session, customer_id=a.id, key_id=key.id)  # repeat is harmless
    with db.session_scope(engine=sqlite_engine) as session:
        assert api_keys.find_active_key(session, raw) is None


def test_suspended_customer_keys_stop(sqlite_engine: Engine) -> None:
    with db.session_scope(engine=sqlite_engine) as session:
        customer = onboarding.create_customer(session, name="A", email="s@a.example.com", actor=CLI)
        _key, raw = api_keys.create_api_key(session, customer_id=customer.id, name="k")
    with db.session_scope(engine=sqlite_engine) as session:
        stored = session.get(Customer, customer.id)
        assert stored is not None
        stored.status = "suspended"
    with db.session_scope(engine=sqlite_engine) as session:
        assert api_keys.find_active_key(session, raw) is None


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_bad_key_name_is_refused(sqlite_engine: Engine, name: str) -> None:
    with db.session_scope(engine=sqlite_engine) as session:
        customer = onboarding.create_customer(session, name="A", email="n@a.example.com", actor=CLI)
    with pytest.raises(ValidationFailed), db.session_scope(engine=sqlite_engine) as session:
        api_keys.create_api_key(session, customer_id=customer.id, name=name)


def test_debit_adjustment_is_audited_and_cannot_pass_the_limit(sqlite_engine: Engine) -> None:
    from creditdash.billing.adjustments import debit_credits
    from creditdash.core.errors import InsufficientCredits

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
