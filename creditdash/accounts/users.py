"""Users: creation, sign-in checks, passwords."""

from __future__ import annotations

import secrets
from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from creditdash.accounts.models import User
from creditdash.accounts.passwords import check_password_policy, hash_password, verify_password
from creditdash.core.errors import AuthenticationFailed, Conflict, NotFound, ValidationFailed
from creditdash.core.settings import get_settings
from creditdash.core.timeutil import utcnow

SIGN_IN_FAILED = "Incorrect email or password."
ONE_TIME_PASSWORD_EXPIRED = (  # a message
    "This one-time password has expired. Ask the platform administrator to set a new one."  # noqa: S105
)


class OneTimePasswordExpired(AuthenticationFailed):
    code = "one_time_password_expired"


def normalize_email(email: str) -> str:
    """A syntactically valid address, lower-cased (emails are unique regardless of case)."""
    if not isinstance(email, str) or not email.strip():
        raise ValidationFailed("email is required")
    try:
        result = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed(f"email is not valid: {exc}") from None
    return result.normalized.lower()


def get_user_by_email(session: Session, email: str) -> User | None:
    try:
        normalized = normalize_email(email)
    except ValidationFailed:
        return None
    return session.execute(select(User).where(col(User.email) == normalized)).scalar_one_or_none()


def create_user(
    session: Session,
    *,
    email: str,
    password: str | None,
    display_name: str = "",
    is_platform_admin: bool = False,
) -> User:
    """A new user. password=None creates one that cannot sign in until a password is set."""
    normalized = normalize_email(email)
    if password is not None:
        check_password_policy(password)
    if len(display_name) > 200:
        raise ValidationFailed("name must be at most 200 characters")
    user = User(
        email=normalized,
        display_name=display_name.strip(),
        password_hash=hash_password(password) if password is not None else None,
        password_changed_at=utcnow() if password is not None else None,
        is_platform_admin=is_platform_admin,
    )
    _ensure_email_free(session, normalized)
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:
        raise Conflict(f"a user with email {normalized} already exists") from None
    return user


def _ensure_email_free(session: Session, email: str) -> None:
    taken = session.execute(select(col(User.id)).where(col(User.email) == email)).first()
    if taken is not None:
        raise Conflict(f"a user with email {email} already exists")


def authenticate(session: Session, *, email: str, password: str) -> User:
    """The user for these credentials; one generic refusal for every kind of failure."""
    user = get_user_by_email(session, email) if isinstance(email, str) else None
    hashed = user.password_hash if user is not None and user.is_active else None
    if not verify_password(password if isinstance(password, str) else "", hashed):
        raise AuthenticationFailed(SIGN_IN_FAILED)
    assert user is not None
    # Said only to someone who knows the password, so it gives nothing away.
    if user.password_expires_at is not None and user.password_expires_at <= utcnow():
        raise OneTimePasswordExpired(ONE_TIME_PASSWORD_EXPIRED)
    return user


def set_password(
    session: Session, *, user_id: int, new_password: str, expires_in: timedelta | None = None
) -> None:
    """Set a password. With expires_in it is a one-time password: it works only to choose a
    new one, and not at all once expires_in has passed."""
    check_password_policy(new_password)
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user not found")
    user.password_hash = hash_password(new_password)
    user.password_changed_at = utcnow()
    user.must_change_password = expires_in is not None
    user.password_expires_at = utcnow() + expires_in if expires_in is not None else None
    session.add(user)
    session.flush()


def issue_one_time_password(session: Session, *, user_id: int) -> str:
    """A one-time password for the operator to hand to the user (when no mail can carry a reset
    link): it works for one_time_password_ttl_s, and only to choose a password of their own,
    which the operator then does not know. Returned once, stored only as its hash."""
    temporary = secrets.token_urlsafe(12)
    expires_in = timedelta(seconds=get_settings().one_time_password_ttl_s)
    set_password(session, user_id=user_id, new_password=temporary, expires_in=expires_in)
    return temporary
