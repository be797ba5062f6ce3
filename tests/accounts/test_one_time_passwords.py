"""Invitations: who may invite, and the one-time passwords they hand out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from creditdash.accounts import sessions, signup, users
from creditdash.accounts.customers import customers_of_user
from creditdash.accounts.throttle import MemoryBackend, SignInThrottle
from creditdash.accounts.users import OneTimePasswordExpired
from creditdash.core import db, settings
from creditdash.core.audit import Actor
from creditdash.core.errors import AuthenticationFailed, Conflict, Forbidden
from creditdash.core.timeutil import utcnow
from tests.factories import signed_up


def test_owner_invites_and_members_cannot(sqlite_engine: Engine) -> None:
    owner_id, customer_id = signed_up()
    owner = Actor.user(owner_id, "founder@example.com")
    with db.session_scope() as session:
        temporary = signup.invite(
            session, customer_id=customer_id, inviter=owner, email="mate@example.com"
        )
    assert temporary and len(temporary) >= 12
    with db.session_scope(readonly=True) as session:
        mate = users.authenticate(session, email="mate@example.com", password=temporary)
        assert mate.id is not None
        assert [r for _c, r in customers_of_user(session, mate.id)] == ["developer"]
    member = Actor.user(mate.id, "mate@example.com")
    with db.session_scope() as session, pytest.raises(Forbidden):
        signup.invite(session, customer_id=customer_id, inviter=member, email="x@example.com")
    with db.session_scope() as session, pytest.raises(Conflict, match="already"):
        signup.invite(session, customer_id=customer_id, inviter=owner, email="mate@example.com")
    # Someone with no role in the workspace cannot invite into it either.
    other_id, _other = signed_up("stranger@example.com")
    with db.session_scope() as session, pytest.raises(Forbidden):
        signup.invite(
            session,
            customer_id=customer_id,
            inviter=Actor.user(other_id, "stranger@example.com"),
            email="y@example.com",
        )


def test_inviting_an_existing_account_is_refused_and_changes_nothing(sqlite_engine: Engine) -> None:
    owner_id, customer_id = signed_up()
    _other_id, _other = signed_up("colleague@example.com")
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


# ------------------------------------------------------------- invitations' one-time passwords


def _invited(email: str = "mate@example.com") -> str:
    owner_id, customer_id = signed_up()
    with db.session_scope() as session:
        temporary = signup.invite(
            session,
            customer_id=customer_id,
            inviter=Actor.user(owner_id, "founder@example.com"),
            email=email,
        )
    assert temporary
    return temporary


def _sign_in(email: str, password: str) -> sessions.SignedInResult:
    return sessions.sign_in(
        email=email,
        password=password,
        ttl=timedelta(hours=1),
        address="192.0.2.9",
        throttle=SignInThrottle(MemoryBackend()),
    )


def test_an_invite_password_only_lets_its_holder_choose_their_own(engine: Engine) -> None:
    temporary = _invited()
    signed = _sign_in("mate@example.com", temporary)
    assert signed.must_change_password
    with db.session_scope(readonly=True) as session:
        # Nothing (pages, downloads) sees this session as signed in; only the password form.
        assert sessions.user_for_token(session, signed.token) is None
        pending = sessions.pending_user_for_token(session, signed.token)
        assert pending is not None and pending.email == "mate@example.com"
    with pytest.raises(AuthenticationFailed, match="current password is incorrect"):
        sessions.replace_one_time_password(
            token=signed.token,
            current_password="not the one-time one",
            new_password="my own password 1",
            ttl=timedelta(hours=1),
        )
    token = sessions.replace_one_time_password(
        token=signed.token,
        current_password=temporary,
        new_password="my own password 1",
        ttl=timedelta(hours=1),
    )
    with db.session_scope(readonly=True) as session:
        user = sessions.user_for_token(session, token)
        assert user is not None and not user.must_change_password
        assert user.password_expires_at is None
        assert sessions.pending_user_for_token(session, signed.token) is None  # ended
    # The one-time password is gone; the new one signs in without conditions.
    with pytest.raises(AuthenticationFailed, match="Incorrect email or password"):
        _sign_in("mate@example.com", temporary)
    assert not _sign_in("mate@example.com", "my own password 1").must_change_password
    with pytest.raises(AuthenticationFailed):
        sessions.replace_one_time_password(
            token=token,
            current_password="my own password 1",
            new_password="yet another one 2",
            ttl=timedelta(hours=1),
        )


def test_an_invite_password_expires(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITDASH_INVITE_PASSWORD_TTL_S", "3600")
    settings.reset_settings()
    temporary = _invited()
    with db.session_scope(readonly=True) as session:
        mate = users.get_user_by_email(session, "mate@example.com")
        assert mate is not None and mate.must_change_password
        assert mate.password_expires_at is not None
        left = mate.password_expires_at - utcnow()
        assert timedelta(minutes=59) < left <= timedelta(hours=1)
    signed = _sign_in("mate@example.com", temporary)  # still valid
    with db.session_scope() as session:
        mate = users.get_user_by_email(session, "mate@example.com")
        assert mate is not None
        mate.password_expires_at = utcnow() - timedelta(seconds=1)
        session.add(mate)
    with pytest.raises(OneTimePasswordExpired, match="one-time password has expired"):
        _sign_in("mate@example.com", temporary)
    with pytest.raises(OneTimePasswordExpired):
        sessions.replace_one_time_password(
            token=signed.token,
            current_password=temporary,
            new_password="my own password 1",
            ttl=timedelta(hours=1),
        )
    # A wrong password for the same account still says nothing about the invitation.
    with pytest.raises(AuthenticationFailed, match="Incorrect email or password"):
        _sign_in("mate@example.com", "a wrong guess")
