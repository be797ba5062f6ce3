"""encrypt provider extra header values

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

providers.extra_headers_json keeps its shape ({name: value}) but each value becomes a Fernet
token under the key the provider api_key uses (HMAC-SHA256 of CREDITDASH_SECRET_KEY and
"provider-key", as creditdash/core/crypto.py derives it; written out here so this migration keeps
doing what it did when crypto.py changes). Upgrading twice, or over values some code already
encrypted, changes nothing: a value that decrypts under the key is left as it is. A value that
looks like a Fernet token but does not decrypt stops the migration (the secret key changed)
rather than being encrypted a second time. Downgrade decrypts the values back to plaintext.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

import sqlalchemy as sa
from alembic import op
from cryptography.fernet import Fernet, InvalidToken

from creditdash.core.settings import get_settings

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

PURPOSE = "provider-key"
# Version byte 0x80 and a 64-bit timestamp whose top bytes are zero: every token starts gAAAAA;
# the shortest (73 bytes: one cipher block) is 100 characters of URL-safe base64, "==" included.
_TOKEN = re.compile(r"\AgAAAAA[A-Za-z0-9_-]{92,}={0,2}\Z", re.ASCII)


def _fernet() -> Fernet:
    secret = get_settings().resolved_secret_key()
    key = hmac.new(secret.encode("utf-8"), PURPOSE.encode("utf-8"), hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def _decrypted(value: str, fernet: Fernet, provider: str) -> str | None:
    """The plaintext of a token under our key; None for a value that is no token at all."""
    try:
        return fernet.decrypt(value.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeEncodeError):
        if _TOKEN.match(value):
            raise RuntimeError(
                f"provider {provider!r}: an extra header value is encrypted with another key; "
                "was CREDITDASH_SECRET_KEY changed?"
            ) from None
        return None


def _rewrite(encrypt: bool) -> None:
    if op.get_context().as_sql:
        raise RuntimeError("this migration re-encrypts rows and cannot run in offline (--sql) mode")
    connection = op.get_bind()
    providers = sa.table(
        "providers", sa.column("id"), sa.column("name"), sa.column("extra_headers_json")
    )
    rows = connection.execute(
        sa.select(providers.c.id, providers.c.name, providers.c.extra_headers_json)
    ).all()
    fernet: Fernet | None = None  # the secret is only read when some row has headers
    for row_id, name, stored in rows:
        headers = json.loads(stored or "{}")
        if not headers:
            continue
        fernet = fernet or _fernet()
        changed = {}
        for header, value in headers.items():
            plain = _decrypted(str(value), fernet, name)
            if encrypt and plain is None:
                changed[header] = fernet.encrypt(str(value).encode("utf-8")).decode("ascii")
            elif not encrypt and plain is not None:
                changed[header] = plain
        if changed:
            connection.execute(
                providers.update()
                .where(providers.c.id == row_id)
                .values(extra_headers_json=json.dumps({**headers, **changed}, sort_keys=True))
            )


def upgrade() -> None:
    _rewrite(encrypt=True)


def downgrade() -> None:
    _rewrite(encrypt=False)
