"""Password reset by email: the link in a real email resets the password once, ends sessions."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from creditdash.accounts import password_reset, sessions, users
from creditdash.accounts.models import PasswordReset, User
from creditdash.core import db
from creditdash.core.audit import AuditEntry
from creditdash.core.errors import AuthenticationFailed, ValidationFailed
from creditdash.core.outbox import OutboxMail
from creditdash.core.timeutil import utcnow
from creditdash.notify import mail
from tests.factories import signed_up
from tests.notify.smtp import Inbox, smtp_inbox

__all__ = ["smtp_inbox"]

OLD, NEW = "a-long-password-1", "another-long-password-2"


def _request(email: str) -> None:
    with db.session_scope() as session:
        password_reset.request_reset(session, email)


def _token(inbox: Inbox, address: str) -> str:
    [message] = inbox.to(address)
    found = re.search(r"/reset-password\?token=(\S+)", message.get_content())
    assert found is not None
    return found.group(1)


def _reset(token: str, password: str) -> None:
    with db.session_scope() as session:
        password_reset.reset_password(session, token, password)


def test_the_emailed_link_resets_the_password_once(engine: Engine, smtp_inbox: Inbox) -> None:
    user_id, _ = signed_up("ada@example.com")
    with db.session_scope() as session:
        open_session = sessions.start_session(session, user_id=user_id, ttl=timedelta(hours=1))
    _request("Ada@Example.com")
    assert mail.send_due_mail() == 1
    token = _token(smtp_inbox, "ada@example.com")

    _reset(token, NEW)
    with pytest.raises(ValidationFailed, match="invalid, used or expired"):
        _reset(token, "yet-another-password-3")

    with db.session_scope(readonly=True) as session:
        assert sessions.user_for_token(session, open_session) is None  # signed out
        with pytest.raises(AuthenticationFailed):
            users.authenticate(session, email="ada@example.com", password=OLD)
        users.authenticate(session, email="ada@example.com", password=NEW)
        actions = session.exec(select(AuditEntry.action)).all()
    assert "user.password_reset" in actions and "user.password_reset_requested" in actions


def test_unknown_addresses_get_nothing_and_requests_are_throttled(engine: Engine) -> None:
    signed_up("ada@example.com")
    _request("nobody@example.com")
    _request("not an address")
    for _ in range(password_reset.MAX_OPEN_LINKS + 2):
        _request("ada@example.com")
    with db.session_scope(readonly=True) as session:
        rows = session.exec(select(OutboxMail)).all()
    assert len(rows) == password_reset.MAX_OPEN_LINKS
    assert {r.to_addr for r in rows} == {"ada@example.com"}
    assert {r.kind for r in rows} == {"password_reset"}


def test_bad_tokens_and_weak_passwords_change_nothing(engine: Engine) -> None:
    user_id, _ = signed_up("ada@example.com")
    _request("ada@example.com")
    with db.session_scope(readonly=True) as session:
        [row] = session.exec(select(OutboxMail)).all()
    token = row.body_text.split("token=")[1].split()[0]
    with pytest.raises(ValidationFailed):
        _reset(token, "short")
    with pytest.raises(ValidationFailed, match="invalid"):
        _reset("made-up", NEW)
    with pytest.raises(ValidationFailed, match="invalid"):
        _reset("", NEW)
    # The weak password did not use the link up; an expired link is refused.
    with db.session_scope() as session:
        reset = session.exec(select(PasswordReset)).one()
        assert reset.used_at is None
        reset.expires_at = utcnow() - timedelta(seconds=1)
        session.add(reset)
    with pytest.raises(ValidationFailed, match="expired"):
        _reset(token, NEW)
    with db.session_scope(readonly=True) as session:
        users.authenticate(session, email="ada@example.com", password=OLD)
        user = session.exec(select(User).where(col(User.id) == user_id)).one()
        assert user.password_changed_at is not None


def test_a_reset_clears_a_one_time_password(engine: Engine) -> None:
    user_id, _ = signed_up("ada@example.com")
    with db.session_scope() as session:
        users.set_password(
            session, user_id=user_id, new_password="one-time-pass-9", expires_in=timedelta(1)
        )
    _request("ada@example.com")
    with db.session_scope(readonly=True) as session:
        [row] = session.exec(select(OutboxMail)).all()
    _reset(row.body_text.split("token=")[1].split()[0], NEW)
    with db.session_scope(readonly=True) as session:
        user = session.get(User, user_id)
        assert user is not None and not user.must_change_password
