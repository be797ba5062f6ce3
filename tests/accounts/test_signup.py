"""Sign-up and invitations."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from creditdash import db
from creditdash.accounts import signup, users
from creditdash.accounts.audit import Actor
from creditdash.accounts.customers import customer_balance, customers_of_user
from creditdash.errors import Conflict, Forbidden, ValidationFailed


def _sign_up(email: str = "founder@example.com") -> tuple[int, str]:
    with db.session_scope() as session:
        user, customer = signup.sign_up(
            session,
            email=email,
            password="a-long-password-1",
            workspace_name="Acme Labs",
            display_name="Ada",
        )
        assert user.id is not None
        return user.id, customer.id


def test_sign_up_makes_an_owner_with_an_empty_balance(sqlite_engine: Engine) -> None:
    user_id, customer_id = _sign_up()
    with db.session_scope(readonly=True) as session:
        [(customer, role)] = customers_of_user(session, user_id)
        assert (customer.id, customer.name, role) == (customer_id, "Acme Labs", "owner")
        assert customer_balance(session, customer_id).posted_micros == 0
        users.authenticate(session, email="FOUNDER@example.com", password="a-long-password-1")


def test_sign_up_refuses_a_taken_email_and_weak_passwords(sqlite_engine: Engine) -> None:
    _sign_up()
    with db.session_scope() as session, pytest.raises(Conflict, match="exists already"):
        signup.sign_up(
            session,
            email="Founder@Example.com",
            password="another-password-2",
            workspace_name="Other",
        )
    with db.session_scope() as session, pytest.raises(ValidationFailed):
        signup.sign_up(session, email="new@example.com", password="short", workspace_name="X")
    with db.session_scope(readonly=True) as session:
        assert users.get_user_by_email(session, "new@example.com") is None


def test_owner_invites_and_members_cannot(sqlite_engine: Engine) -> None:
    owner_id, customer_id = _sign_up()
    owner = Actor.user(owner_id, "founder@example.com")
    with db.session_scope() as session:
        temporary = signup.invite(
            session, customer_id=customer_id, inviter=owner, email="mate@example.com"
        )
    assert temporary and len(temporary) >= 12
    with db.session_scope(readonly=True) as session:
        mate = users.authenticate(session, email="mate@example.com", password=temporary)
        assert mate.id is not None
        assert [r for _c, r in customers_of_user(session, mate.id)] == ["member"]
    member = Actor.user(mate.id, "mate@example.com")
    with db.session_scope() as session, pytest.raises(Forbidden):
        signup.invite(session, customer_id=customer_id, inviter=member, email="x@example.com")
    with db.session_scope() as session, pytest.raises(Conflict, match="already"):
        signup.invite(session, customer_id=customer_id, inviter=owner, email="mate@example.com")
    # Someone with no role in the workspace cannot invite into it either.
    other_id, _other = _sign_up("stranger@example.com")
    with db.session_scope() as session, pytest.raises(Forbidden):
        signup.invite(
            session,
            customer_id=customer_id,
            inviter=Actor.user(other_id, "stranger@example.com"),
            email="y@example.com",
        )


def test_inviting_an_existing_account_is_refused_and_changes_nothing(sqlite_engine: Engine) -> None:
    owner_id, customer_id = _sign_up()
    _other_id, _other = _sign_up("colleague@example.com")
    owner = Actor.user(owner_id, "founder@example.com")
    with db.session_scope() as session, pytest.raises(Conflict, match="already has an account"):
        signup.invite(
            session, customer_id=customer_id, inviter=owner, email="Colleague@example.com"
        )
    with db.session_scope(readonly=True) as session:
        colleague = users.get_user_by_email(session, "colleague@example.com")
        assert colleague is not None and colleague.id is not None
        assert [c.id for c, _r in customers_of_user(session, colleague.id)] != [customer_id]
        users.authenticate(session, email="colleague@example.com", password="a-long-password-1")
