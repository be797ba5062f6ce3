"""Provider secrets at rest: the upstream API key and the extra header values, encrypted with
the key derived from CREDITDASH_SECRET_KEY (core/crypto.py); only header names stay readable."""

from __future__ import annotations

import json

from creditdash.core import crypto

KEY_PURPOSE = "provider-key"
# Extra header values (an `api-key` is as secret as the bearer key) are encrypted with the same
# key; the names stay readable, so the admin pages can list them without decrypting anything.
HEADER_PURPOSE = KEY_PURPOSE


def encrypt_headers(headers: dict[str, str]) -> str:
    """What Provider.extra_headers_json stores: {name: Fernet token of the value}."""
    return json.dumps(
        {name: crypto.encrypt(value, purpose=HEADER_PURPOSE) for name, value in headers.items()},
        sort_keys=True,
    )


def decrypt_headers(stored: str) -> dict[str, str]:
    """The extra headers to send upstream, decrypted (Provider.extra_headers_json)."""
    return {
        name: crypto.decrypt(token, purpose=HEADER_PURPOSE)
        for name, token in json.loads(stored or "{}").items()
    }


def header_names(stored: str) -> list[str]:
    """The names of a provider's extra headers, without touching their values."""
    return sorted(json.loads(stored or "{}"))
