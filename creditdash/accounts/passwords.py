"""Password hashing (Argon2id via passlib) and the password policy."""

from __future__ import annotations

from functools import lru_cache

from passlib.context import CryptContext

from creditdash.core.errors import ValidationFailed

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 256

_context = CryptContext(schemes=["argon2"], deprecated="auto")


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash of a throwaway password: verifying against it costs as much as a real check, so a
    sign-in for an unknown email takes as long as one with a wrong password."""
    return str(_context.hash("creditdash-timing-equaliser-not-a-password"))


_COMMON = {
    "password12",
    "password123",
    "1234567890",
    "qwertyuiop",
    "letmein123",
    "iloveyou12",
    "administrator",
    "changeme123",
    "welcome123",
}


def check_password_policy(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise ValidationFailed(f"password must be at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValidationFailed(f"password must be at most {MAX_PASSWORD_CHARS} characters")
    if len(set(password)) < 4:
        raise ValidationFailed("password is too simple: use at least 4 different characters")
    if password.lower() in _COMMON:
        raise ValidationFailed("password is too common")


def hash_password(password: str) -> str:
    return _context.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if not password_hash:
        _context.verify(password, _dummy_hash())
        return False
    try:
        return bool(_context.verify(password, password_hash))
    except (ValueError, TypeError):
        return False
