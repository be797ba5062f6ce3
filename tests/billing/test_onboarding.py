"""New workspaces: a customer with its owner, ledger account and audited opening credit, and
self-service sign-up (billing/onboarding.py)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from creditdash.accounts import customers, users
from creditdash.accounts.models import Customer, Membership, User
from creditdash.billing import balances, ledger, onboarding
from creditdash.core import db
from creditdash.core.audit import CLI, AuditEntry
from creditdash.core.errors import Conflict, ValidationFailed
from tests.factories import signed_up


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


def test_sign_up_makes_an_owner_with_an_empty_balance(sqlite_engine: Engine) -> None:
    user_id, customer_id = signed_up()
    with db.session_scope(readonly=True) as session:
        [(customer, role)] = customers.customers_of_user(session, user_id)
        assert (customer.id, customer.name, role) == (customer_id, "Acme Labs", "owner")
        assert balances.customer_balance(session, customer_id).posted_micros == 0
        users.authenticate(session, email="FOUNDER@example.com", password="a-long-password-1")


def test_sign_up_refuses_a_taken_email_and_weak_passwords(sqlite_engine: Engine) -> None:
    signed_up()
    with db.session_scope() as session, pytest.raises(Conflict, match="exists already"):
        onboarding.sign_up(
            session,
            email="Founder@Example.com",
            password="another-password-2",
            workspace_name="Other",
        )
    with db.session_scope() as session, pytest.raises(ValidationFailed):
        onboarding.sign_up(session, email="new@example.com", password="short", workspace_name="X")
    with db.session_scope(readonly=True) as session:
        assert users.get_user_by_email(session, "new@example.com") is None
