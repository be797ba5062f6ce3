"""Dashboard sessions: random bearer tokens, stored as SHA-256, expiring, revocable."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlmodel import Session, col

from creditdash import db
from creditdash.accounts.models import User, WebSession
from creditdash.accounts.users import authenticate
from creditdash.db import rowcount
from creditdash.timeutil import utcnow

MAX_TOKEN_CHARS = 200


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(session: Session, *, user_id: int, ttl: timedelta) -> str:
    """Create a session and return its token (shown to the browser only, never stored)."""
    token = secrets.token_urlsafe(32)
    session.add(WebSession(token_hash=_digest(token), user_id=user_id, expires_at=utcnow() + ttl))
    session.flush()
    return token


def sign_in(*, email: str, password: str, ttl: timedelta) -> tuple[User, str]:
    """Check the password in a read-only transaction (it is slow on purpose), then open the
    session in a short write transaction, so sign-ins never hold SQLite's write lock for long."""
    with db.session_scope(readonly=True) as session:
        user = authenticate(session, email=email, password=password)
    assert user.id is not None
    with db.session_scope() as session:
        return user, start_session(session, user_id=user.id, ttl=ttl)


def user_for_token(session: Session, token: str) -> User | None:
    """The signed-in user for a token, or None if unknown, expired, revoked or deactivated."""
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
