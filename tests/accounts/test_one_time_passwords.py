"""One-time passwords an operator hands out (`creditdash users set-password --temporary`):
they only let their holder choose a password of their own, expire, and the CLI prints one once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from creditdash.accounts import sessions, users
from creditdash.accounts.throttle import MemoryBackend, SignInThrottle
from creditdash.accounts.users import OneTimePasswordExpired
from creditdash.cli import main
from creditdash.core import db, settings
from creditdash.core.errors import AuthenticationFailed
from creditdash.core.timeutil import utcnow
from tests.factories import signed_up


def test_set_password_temporary_prints_a_one_time_password_once(sqlite_engine: Engine) -> None:
    signed_up("mate@example.com")
    runner = CliRunner()
    result = runner.invoke(main, ["users", "set-password", "mate@example.com", "--temporary"])
    assert result.exit_code == 0, result.output
    assert "works for 72 h, once" in result.output
    temporary = result.output.rsplit(": ", 1)[1].strip()
    signed = _sign_in("mate@example.com", temporary)
    assert signed.must_change_password
    # The old password no longer works; an unknown user and a double instruction change nothing.
    with pytest.raises(AuthenticationFailed):
        _sign_in("mate@example.com", "a-long-password-1")
    unknown = runner.invoke(main, ["users", "set-password", "nobody@example.com", "--temporary"])
    assert unknown.exit_code != 0 and "no user with that email" in unknown.output
    both = runner.invoke(
        main, ["users", "set-password", "mate@example.com", "--temporary", "--password", "x" * 12]
    )
    assert both.exit_code != 0 and "do not give --password" in both.output
    _sign_in("mate@example.com", temporary)  # still the one-time password


def _invited(email: str = "mate@example.com") -> str:
    user_id, _customer_id = signed_up(email)
    with db.session_scope() as session:
        temporary = users.issue_one_time_password(session, user_id=user_id)
    assert temporary and len(temporary) >= 12
    return temporary


def _sign_in(email: str, password: str) -> sessions.SignedInResult:
    return sessions.sign_in(
        email=email,
        password=password,
        ttl=timedelta(hours=1),
        address="192.0.2.9",
        throttle=SignInThrottle(MemoryBackend()),
    )


def test_a_one_time_password_only_lets_its_holder_choose_their_own(engine: Engine) -> None:
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


def test_a_one_time_password_expires(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITDASH_ONE_TIME_PASSWORD_TTL_S", "3600")
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
    # A wrong password for the same account still says nothing about the one-time one.
    with pytest.raises(AuthenticationFailed, match="Incorrect email or password"):
        _sign_in("mate@example.com", "a wrong guess")
