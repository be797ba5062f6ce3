"""Password reset by email: a single-use link, valid for an hour, to choose a new password.

request_reset() answers the same way whether the address has an account or not (the page
always says "if an account exists..."), so nobody learns who has one. The link carries a random
token; only its SHA-256 is stored. Using it is a conditional UPDATE (unused and unexpired,
checked by row count), so a link works once even when it is clicked twice at the same moment.
A reset ends every session of the user: whoever knew the old password is signed out.

The throttle counts the user's open links in the database rather than in the sign-in throttle's
memory: it must hold across processes and restarts, and each link already is a row.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from creditdash.accounts.models import PasswordReset, User
from creditdash.accounts.passwords import check_password_policy
from creditdash.accounts.sessions import end_all_sessions
from creditdash.accounts.users import get_user_by_email, set_password
from creditdash.core import db
from creditdash.core.audit import Actor, record
from creditdash.core.errors import ValidationFailed
from creditdash.core.outbox import enqueue_mail
from creditdash.core.settings import get_settings
from creditdash.core.timeutil import utcnow
from creditdash.routes import RESET_PASSWORD_PATH

LINK_TTL = timedelta(hours=1)
MAX_OPEN_LINKS = 3  # per user per hour: more are silently not sent
MAX_TOKEN_CHARS = 200
INVALID_LINK = "This reset link is invalid, used or expired. Ask for a new one."


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def reset_link(token: str) -> str:
    return f"{get_settings().resolved_public_url()}{RESET_PASSWORD_PATH}?token={token}"


def _mail_text(link: str) -> str:
    return (
        "Hello,\n\nSomeone (hopefully you) asked to reset the password of this creditdash "
        f"account. Choose a new password here:\n\n{link}\n\nThe link works once, for one "
        "hour. If you did not ask for it, ignore this email: your password stays as it is."
    )


def request_reset(session: Session, email: str) -> None:
    """Email a reset link to an active user with this address; for any other address do
    nothing. Either way the caller shows the same message."""
    try:
        user = get_user_by_email(session, email)
    except ValidationFailed:
        return  # not an address at all: treated like an unknown one
    if user is None or user.id is None or not user.is_active:
        return
    now = utcnow()
    open_links = session.execute(
        select(func.count())
        .select_from(PasswordReset)
        .where(
            col(PasswordReset.user_id) == user.id,
            col(PasswordReset.used_at).is_(None),
            col(PasswordReset.created_at) > now - LINK_TTL,
        )
    ).scalar_one()
    if open_links >= MAX_OPEN_LINKS:
        return  # someone keeps asking: the links already sent still work
    token = secrets.token_urlsafe(32)
    reset = PasswordReset(
        user_id=user.id, token_hash=_digest(token), created_at=now, expires_at=now + LINK_TTL
    )
    session.add(reset)
    session.flush()
    enqueue_mail(
        session,
        to=user.email,
        subject="Reset your creditdash password",
        text=_mail_text(reset_link(token)),
        kind="password_reset",
        dedupe_key=f"password_reset:{reset.id}",
    )
    record(
        session,
        actor=Actor.user(user.id, user.email),
        action="user.password_reset_requested",
        target_type="user",
        target_id=str(user.id),
    )


def reset_password(session: Session, token: str, new_password: str) -> User:
    """Set a new password with a reset link's token; the link is used up and every session
    of the user ends. A bad, used or expired token, or a weak password, changes nothing."""
    check_password_policy(new_password)
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise ValidationFailed(INVALID_LINK)
    now = utcnow()
    claimed = session.execute(
        update(PasswordReset)
        .where(
            col(PasswordReset.token_hash) == _digest(token),
            col(PasswordReset.used_at).is_(None),
            col(PasswordReset.expires_at) > now,
        )
        .values(used_at=now)
    )
    if db.rowcount(claimed) != 1:
        raise ValidationFailed(INVALID_LINK)
    reset = session.exec(
        select(PasswordReset).where(col(PasswordReset.token_hash) == _digest(token))
    ).one()
    user = session.get(User, reset.user_id)
    if user is None or user.id is None or not user.is_active:
        raise ValidationFailed(INVALID_LINK)
    set_password(session, user_id=user.id, new_password=new_password)  # clears must_change
    ended = end_all_sessions(session, user_id=user.id)
    record(
        session,
        actor=Actor.user(user.id, user.email),
        action="user.password_reset",
        target_type="user",
        target_id=str(user.id),
        after={"sessions_ended": ended},
    )
    return user
