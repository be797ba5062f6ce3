"""Secrets at rest: Fernet keys derived from CREDITDASH_SECRET_KEY, one per purpose."""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken

from creditdash.core.settings import get_settings


@lru_cache(maxsize=8)
def _fernet(purpose: str, secret: str) -> Fernet:
    # HMAC-SHA256(secret, purpose) gives an independent 32-byte key per purpose.
    key = hmac.new(secret.encode("utf-8"), purpose.encode("utf-8"), hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(plaintext: str, *, purpose: str) -> str:
    secret = get_settings().resolved_secret_key()
    return _fernet(purpose, secret).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str, *, purpose: str) -> str:
    secret = get_settings().resolved_secret_key()
    try:
        return _fernet(purpose, secret).decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise ValueError(
            "cannot decrypt a stored secret: was CREDITDASH_SECRET_KEY changed?"
        ) from None
