"""Dashboard sessions: random bearer tokens, stored as SHA-256, expiring, revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlmodel import Session, col

from creditdash.accounts.models import SessionHandoff, User, WebSession
from creditdash.accounts.passwords import verify_password
from creditdash.accounts.throttle import SignInThrottle, get_throttle
from creditdash.accounts.users import (
    ONE_TIME_PASSWORD_EXPIRED,
    OneTimePasswordExpired,
    authenticate,
    normalize_email,
    set_password,
)
from creditdash.core import db
from creditdash.core.audit import Actor, record
from creditdash.core.db import rowcount
from creditdash.core.errors import AuthenticationFailed, TooManyAttempts, ValidationFailed
from creditdash.core.timeutil import utcnow

MAX_TOKEN_CHARS = 200
# The browser's cookie (HttpOnly, set by web/auth.py).
SESSION_COOKIE = "creditdash_session"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_from_cookie_header(header: str) -> str:
    """The session token in a Cookie request header ("" when absent). Parsed by hand: one
    odd cookie of another app on the host must not hide ours (SimpleCookie stops at it)."""
    for pair in (header or "").split(";"):
        name, _, value = pair.strip().partition("=")
        if name == SESSION_COOKIE:
            return value.strip().strip('"')
    return ""


def start_session(session: Session, *, user_id: int, ttl: timedelta) -> str:
    """Create a session and return its token (shown to the browser only, never stored)."""
    token = secrets.token_urlsafe(32)
    session.add(WebSession(token_hash=_digest(token), user_id=user_id, expires_at=utcnow() + ttl))
    session.flush()
    return token


@dataclass(frozen=True)
class SignedInResult:
    user: User
    token: str
    # Signed in with a one-time password: nothing but choosing a new one is allowed.
    must_change_password: bool


def _attempted_email(email: object) -> str:
    """The email as the throttle and the audit log know it: normalised when valid."""
    if not isinstance(email, str):
        return ""
    try:
        return normalize_email(email)
    except ValidationFailed:
        return email.strip().lower()[:320]


def _audit_attempt(action: str, email: str, address: str, **extra: object) -> None:
    with db.session_scope() as session:
        record(
            session,
            actor=Actor(label=f"address:{address or 'unknown'}"),
            action=action,
            target_type="email",
            target_id=email[:80],
            after={"email": email, "address": address, **extra},
        )


def sign_in(
    *,
    email: str,
    password: str,
    ttl: timedelta,
    address: str = "",
    throttle: SignInThrottle | None = None,
) -> SignedInResult:
    """Sign in from a client address, unless the email or the address is locked after too many
    failures (then the password is not even checked). Every failure and every refusal goes to
    the audit log with the email attempted and the address, never the password.

    The password check runs in a read-only transaction (it is slow on purpose), the session
    opens in a short write transaction, so sign-ins never hold SQLite's write lock for long."""
    throttle = throttle or get_throttle()
    attempted = _attempted_email(email)
    try:
        throttle.check(email=attempted, address=address)
    except TooManyAttempts as exc:
        _audit_attempt(
            "signin.throttled", attempted, address, retry_after_s=round(exc.retry_after_s)
        )
        raise
    try:
        with db.session_scope(readonly=True) as session:
            user = authenticate(session, email=email, password=password)
    except AuthenticationFailed:
        locked_s = throttle.failed(email=attempted, address=address)
        _audit_attempt("signin.failed", attempted, address, locked_s=round(locked_s))
        raise
    throttle.succeeded(email=attempted)
    assert user.id is not None
    with db.session_scope() as session:
        token = start_session(session, user_id=user.id, ttl=ttl)
    return SignedInResult(user, token, user.must_change_password)


def user_for_token(session: Session, token: str) -> User | None:
    """The signed-in user for a token, or None if unknown, expired, revoked or deactivated, or
    if the user signed in with a one-time password and has not chosen their own yet (such a
    session is good for pending_user_for_token only)."""
    user = pending_user_for_token(session, token)
    return None if user is None or user.must_change_password else user


def pending_user_for_token(session: Session, token: str) -> User | None:
    """Like user_for_token, but also a user who still has to replace a one-time password: for
    the form that replaces it, and nothing else."""
    if not token or not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        return None
    row = session.execute(
        select(User)
        .join(WebSession, col(WebSession.user_id) == col(User.id))
        .where(
            col(WebSession.token_hash) == _digest(token),
            col(WebSession.revoked_at).is_(None),
            col(WebSession.expires_at) > utcnow(),
            col(User.is_active).is_(True),
        )
    ).scalar_one_or_none()
    return row


def replace_one_time_password(
    *, token: str, current_password: str, new_password: str, ttl: timedelta
) -> str:
    """For a user signed in with a one-time password: set their own password, end every session
    (the one-time one too) and open a new one, whose token is returned."""
    with db.session_scope() as session:
        user = pending_user_for_token(session, token)
        if user is None or user.id is None or not user.must_change_password:
            raise AuthenticationFailed("Sign in first.")
        if user.password_expires_at is not None and user.password_expires_at <= utcnow():
            raise OneTimePasswordExpired(ONE_TIME_PASSWORD_EXPIRED)
        change_password(
            session,
            user_id=user.id,
            current_password=current_password,
            new_password=new_password,
        )
        return start_session(session, user_id=user.id, ttl=ttl)


HANDOFF_TTL = timedelta(seconds=60)


def hand_off(session: Session, token: str) -> str:
    """A single-use code, good for HANDOFF_TTL, that trades the session behind `token` for a
    cookie (take_handoff). The code travels in a URL; it is worth nothing once used."""
    row = session.execute(
        select(WebSession).where(
            col(WebSession.token_hash) == _digest(token), col(WebSession.revoked_at).is_(None)
        )
    ).scalar_one_or_none()
    if row is None or row.id is None:
        raise AuthenticationFailed("Sign in first.")
    code = secrets.token_urlsafe(32)
    session.add(
        SessionHandoff(
            code_hash=_digest(code), web_session_id=row.id, expires_at=utcnow() + HANDOFF_TTL
        )
    )
    session.flush()
    return code


def take_handoff(session: Session, code: str) -> str | None:
    """Use a handoff code once: the session it names gets a new token, returned for the
    cookie (the old one, seen by the websocket handler, stops working). None when the code is
    unknown, used, expired, or its session has ended."""
    if not code or not isinstance(code, str) or len(code) > MAX_TOKEN_CHARS:
        return None
    now = utcnow()
    claimed = session.execute(
        update(SessionHandoff)
        .where(
            col(SessionHandoff.code_hash) == _digest(code),
            col(SessionHandoff.used_at).is_(None),
            col(SessionHandoff.expires_at) > now,
        )
        .values(used_at=now)
        .returning(col(SessionHandoff.web_session_id))
    ).scalar_one_or_none()
    if claimed is None:
        return None
    token = secrets.token_urlsafe(32)
    result = session.execute(
        update(WebSession)
        .where(
            col(WebSession.id) == claimed,
            col(WebSession.revoked_at).is_(None),
            col(WebSession.expires_at) > now,
        )
        .values(token_hash=_digest(token))
    )
    return token if rowcount(result) else None


def end_session(session: Session, token: str) -> bool:
    """Revoke the session behind a token. True if one was open."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return False
    result = session.execute(
        update(WebSession)
        .where(col(WebSession.token_hash) == _digest(token), col(WebSession.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(rowcount(result))


def end_all_sessions(session: Session, *, user_id: int) -> int:
    result = session.execute(
        update(WebSession)
        .where(col(WebSession.user_id) == user_id, col(WebSession.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    return int(rowcount(result))


def change_password(
    session: Session, *, user_id: int, current_password: str, new_password: str
) -> None:
    """Change a password; every session of the user ends (they sign in again)."""
    user = session.get(User, user_id)
    if user is None or not verify_password(current_password, user.password_hash):
        raise AuthenticationFailed("The current password is incorrect.")
    if verify_password(new_password, user.password_hash):
        raise ValidationFailed("The new password must differ from the current one.")
    set_password(session, user_id=user_id, new_password=new_password)
    end_all_sessions(session, user_id=user_id)
