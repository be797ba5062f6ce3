"""Admin edits to upstream providers, and a connection test.

The upstream key is write-only: it is stored encrypted, shown as its last four characters, and
never returned. Extra header values are stored encrypted too and shown only by name. Base URLs
pass the same SSRF guard as `catalog import` when saved, and again (with the address pinned)
when tested.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
from pydantic import ValidationError
from sqlalchemy import select
from sqlmodel import Session, col

from creditdash.catalog.importer import ProviderSpec, upsert_provider
from creditdash.catalog.models import ANTHROPIC_KINDS, ANTHROPIC_VERSION, SANDBOX_KINDS, Provider
from creditdash.catalog.secrets import KEY_PURPOSE, decrypt_headers, header_names
from creditdash.catalog.urlguard import pin_base_url
from creditdash.core import crypto
from creditdash.core.audit import Actor, record
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.settings import get_settings

TEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ProviderView:
    name: str
    kind: str
    base_url: str
    key_hint: str
    timeout_s: int
    enabled: bool
    # The extra headers' names with their values masked, e.g. "api-key: ••••"; never a value.
    headers_hint: str = "(none)"


MASK = "••••"


def _headers_hint(provider: Provider) -> str:
    names = header_names(provider.extra_headers_json)
    return ", ".join(f"{name}: {MASK}" for name in names) if names else "(none)"


def list_providers(session: Session) -> list[ProviderView]:
    return [
        list_providers_one(p)
        for p in session.execute(select(Provider).order_by(col(Provider.name))).scalars()
    ]


def save_provider(
    session: Session,
    *,
    name: str,
    base_url: str,
    api_key: str,
    timeout_s: int,
    enabled: bool,
    actor: Actor,
    kind: str = "openai",
) -> ProviderView:
    """Create or update a provider; an empty api_key keeps the stored one."""
    try:
        spec = ProviderSpec(
            name=name.strip(),
            base_url=base_url.strip(),
            api_key=api_key.strip(),
            kind=kind,
            timeout_s=timeout_s,
            enabled=enabled,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValidationFailed(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    existing = session.execute(
        select(Provider).where(col(Provider.name) == spec.name)
    ).scalar_one_or_none()
    before = None if existing is None else _audit_view(existing)
    provider = upsert_provider(
        session,
        spec,
        existing,
        allow_private=get_settings().allow_private_upstreams,
        keep_headers=True,
    )
    record(
        session,
        actor=actor,
        action="provider.create" if existing is None else "provider.update",
        target_type="provider",
        target_id=provider.name,
        before=before,
        after={**_audit_view(provider), "key_changed": bool(spec.api_key)},
    )
    return list_providers_one(provider)


def _audit_view(provider: Provider) -> dict[str, object]:
    # Never the key itself, encrypted or not: only whether one is set and its last four.
    return {
        "base_url": provider.base_url,
        "timeout_s": provider.timeout_s,
        "enabled": provider.enabled,
        "key_last4": provider.api_key_last4,
        "header_names": header_names(provider.extra_headers_json),
    }


def list_providers_one(p: Provider) -> ProviderView:
    return ProviderView(
        p.name,
        p.kind,
        p.base_url,
        f"…{p.api_key_last4}" if p.api_key_last4 else "(none)",
        p.timeout_s,
        p.enabled,
        _headers_hint(p),
    )


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    message: str
    latency_ms: int


def check_connection(session: Session, *, name: str) -> ConnectionResult:
    """GET <base>/models with the provider's key, on the pinned address, no redirects."""
    provider = session.execute(
        select(Provider).where(col(Provider.name) == name)
    ).scalar_one_or_none()
    if provider is None:
        raise NotFound(f"no provider named {name!r}")
    if provider.kind in SANDBOX_KINDS:
        return ConnectionResult(True, "the built-in sandbox answers in process", 0)
    pinned = pin_base_url(
        provider.base_url, kind=provider.kind, allow_private=get_settings().allow_private_upstreams
    )
    # The extra headers too: some providers authenticate with one (api-key, x-api-key).
    headers = {**decrypt_headers(provider.extra_headers_json), "accept": "application/json"}
    if pinned.host_header:
        headers["host"] = pinned.host_header
    if provider.kind in ANTHROPIC_KINDS:
        headers["anthropic-version"] = ANTHROPIC_VERSION
    if provider.api_key_encrypted:
        key = crypto.decrypt(provider.api_key_encrypted, purpose=KEY_PURPOSE)
        if provider.kind in ANTHROPIC_KINDS:
            headers["x-api-key"] = key
        else:
            headers["authorization"] = f"Bearer {key}"
    extensions = {"sni_hostname": pinned.tls_server_name} if pinned.tls_server_name else {}
    started = time.monotonic()
    try:
        with httpx.Client(timeout=TEST_TIMEOUT_S, follow_redirects=False) as client:
            answer = client.get(
                pinned.base_url.rstrip("/") + "/models", headers=headers, extensions=extensions
            )
    except httpx.HTTPError as exc:
        return ConnectionResult(
            False,
            f"could not connect: {type(exc).__name__}",
            int((time.monotonic() - started) * 1000),
        )
    latency = int((time.monotonic() - started) * 1000)
    if answer.status_code != 200:
        # The status only: an upstream error body may echo what was sent.
        return ConnectionResult(False, f"the upstream answered HTTP {answer.status_code}", latency)
    try:
        count = len(answer.json().get("data", []))
    except ValueError:
        return ConnectionResult(False, "the upstream answered 200 but not with JSON", latency)
    return ConnectionResult(True, f"connected; {count} models listed", latency)
