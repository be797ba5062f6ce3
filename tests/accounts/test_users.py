"""Users, passwords and dashboard sessions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from creditdash.accounts import sessions, users
from creditdash.accounts.models import SessionHandoff, User, WebSession
from creditdash.core import db
from creditdash.core.errors import AuthenticationFailed, Conflict, ValidationFailed
from creditdash.core.timeutil import utcnow

GOOD_PASSWORD = "correct horse battery"


def user_count(engine: Engine) -> int:
    with db.session_scope(engine=engine, readonly=True) as session:
        return int(session.execute(select(func.count()).select_from(User)).scalar_one())


def make_user(engine: Engine, email: str = "Ana@Example.com", **kwargs: object) -> User:
    with db.session_scope(engine=engine) as session:
        return users.create_user(session, email=email, password=GOOD_PASSWORD, **kwargs)  # type: ignore[arg-type]


def test_password_is_stored_as_an_argon2_hash(sqlite_engine: Engine) -> None:
    user = make_user(sqlite_engine)
    assert user.email == "ana@example.com"
    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert GOOD_PASSWORD not in user.password_hash


@pytest.mark.parametrize(
    "email",
    ["", "not-an-email", "a@", "@example.com", "a b@example.com", "x" * 400 + "@example.com"],
)
def test_malformed_email_is_refused_and_writes_nothing(sqlite_engine: Engine, email: str) -> None:
    with (
        pytest.raises(ValidationFailed, match="email"),
        db.session_scope(engine=sqlite_engine) as session,
    ):
        users.create_user(session, email=email, password=GOOD_PASSWORD)
    assert user_count(sqlite_engine) == 0


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least"),
        ("aaaaaaaaaaaa", "too simple"),
        ("password123", "too common"),
        ("x" * 300, "at most"),
    ],
)
def test_weak_password_is_refused_and_writes_nothing(
    sqlite_engine: Engine, password: str, reason: str
) -> None:
    with (
        pytest.raises(ValidationFailed, match=reason),
        db.session_scope(engine=sqlite_engine) as session,
    ):
        users.create_user(session, email="bo@example.com", password=password)
    assert user_count(sqlite_engine) == 0


def test_duplicate_email_is_refused_regardless_of_case(sqlite_engine: Engine) -> None:
    make_user(sqlite_engine, "ana@example.com")
    with pytest.raises(Conflict, match="already exists"):
        make_user(sqlite_engine, "ANA@EXAMPLE.COM")
    assert user_count(sqlite_engine) == 1


def test_sign_in_failures_share_one_message(sqlite_engine: Engine) -> None:
    make_user(sqlite_engine)
    messages = set()
    for email, password in [
        ("ana@example.com", "wrong password!"),
        ("nobody@example.com", GOOD_PASSWORD),
        ("not an email", GOOD_PASSWORD),
        ("ana@example.com", ""),
    ]:
        with (
            pytest.raises(AuthenticationFailed) as refused,
            db.session_scope(engine=sqlite_engine) as session,
        ):
            users.authenticate(session, email=email, password=password)
        messages.add(refused.value.message)
    assert messages == {users.SIGN_IN_FAILED}


def test_sign_in_accepts_any_case_of_the_email(sqlite_engine: Engine) -> None:
    make_user(sqlite_engine)
    with db.session_scope(engine=sqlite_engine) as session:
        assert (
            users.authenticate(session, email="ANA@example.COM", password=GOOD_PASSWORD).email
            == "ana@example.com"
        )


def test_user_without_password_cannot_sign_in(sqlite_engine: Engine) -> None:
    with db.session_scope(engine=sqlite_engine) as session:
        users.create_user(session, email="nopass@example.com", password=None)
    with pytest.raises(AuthenticationFailed), db.session_scope(engine=sqlite_engine) as session:
        users.authenticate(session, email="nopass@example.com", password="")


def test_deactivated_user_cannot_sign_in(sqlite_engine: Engine) -> None:
    user = make_user(sqlite_engine)
    with db.session_scope(engine=sqlite_engine) as session:
        stored = session.get(User, user.id)
        assert stored is not None
        stored.is_active = False
    with pytest.raises(AuthenticationFailed), db.session_scope(engine=sqlite_engine) as session:
        users.authenticate(session, email="ana@example.com", password=GOOD_PASSWORD)


def test_session_token_is_stored_hashed_and_sign_out_ends_it(sqlite_engine: Engine) -> None:
    make_user(sqlite_engine)
    signed = sessions.sign_in(
        email="ana@example.com", password=GOOD_PASSWORD, ttl=timedelta(hours=1)
    )
    user, token = signed.user, signed.token
    with db.session_scope(engine=sqlite_engine) as session:
        stored = session.execute(select(WebSession.token_hash)).scalars().all()
        assert token not in stored and len(stored) == 1
        found = sessions.user_for_token(session, token)
        assert found is not None and found.id == user.id
        assert sessions.user_for_token(session, token + "x") is None
        assert sessions.end_session(session, token) is True
    with db.session_scope(engine=sqlite_engine) as session:
        assert sessions.user_for_token(session, token) is None
        assert sessions.end_session(session, token) is False


def test_expired_session_is_refused(sqlite_engine: Engine) -> None:
    user = make_user(sqlite_engine)
    assert user.id is not None
    with db.session_scope(engine=sqlite_engine) as session:
        token = sessions.start_session(session, user_id=user.id, ttl=timedelta(seconds=-1))
    with db.session_scope(engine=sqlite_engine) as session:
        assert sessions.user_for_token(session, token) is None


def test_changing_password_needs_the_current_one_and_signs_out(sqlite_engine: Engine) -> None:
    user = make_user(sqlite_engine)
    assert user.id is not None
    token = sessions.sign_in(
        email="ana@example.com", password=GOOD_PASSWORD, ttl=timedelta(hours=1)
    ).token
    with pytest.raises(AuthenticationFailed), db.session_scope(engine=sqlite_engine) as session:
        sessions.change_password(
            session, user_id=user.id, current_password="nope nope", new_password="another good one"
        )
    with db.session_scope(engine=sqlite_engine) as session:
        sessions.change_password(
            session,
            user_id=user.id,
            current_password=GOOD_PASSWORD,
            new_password="another good one",
        )
    with db.session_scope(engine=sqlite_engine) as session:
        users.authenticate(session, email="ana@example.com", password="another good one")
        assert sessions.user_for_token(session, token) is None  # signed out everywhere


def test_a_handoff_code_is_single_use_short_lived_and_replaces_the_token(engine: Engine) -> None:
    user = make_user(engine)
    assert user.id is not None
    with db.session_scope() as session:
        first = sessions.start_session(session, user_id=user.id, ttl=timedelta(hours=1))
        code = sessions.hand_off(session, first)
        stale = sessions.hand_off(session, first)
    with db.session_scope() as session:
        assert sessions.user_for_token(session, code) is None  # a code is no session token
        cookie = sessions.take_handoff(session, code)
        assert cookie is not None and cookie not in (first, code)
    with db.session_scope() as session:
        assert sessions.take_handoff(session, code) is None  # once only
        assert sessions.user_for_token(session, first) is None  # replaced
        found = sessions.user_for_token(session, cookie)
        assert found is not None and found.id == user.id
        session.execute(update(SessionHandoff).values(expires_at=utcnow() - timedelta(seconds=1)))
    with db.session_scope() as session:
        assert sessions.take_handoff(session, stale) is None  # expired
    with db.session_scope() as session:
        late = sessions.hand_off(session, cookie)
        sessions.end_session(session, cookie)
    with db.session_scope() as session:
        assert sessions.take_handoff(session, late) is None  # its session ended
        with pytest.raises(AuthenticationFailed):
            sessions.hand_off(session, "no such token")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("creditdash_session=abc-_1", "abc-_1"),
        ('theme=dark; other={"a": 1}; creditdash_session="abc"', "abc"),
        ("creditdash_sessionx=1; xcreditdash_session=2", ""),
        ("", ""),
    ],
)
def test_the_session_token_is_read_from_a_cookie_header(header: str, token: str) -> None:
    assert sessions.token_from_cookie_header(header) == token
