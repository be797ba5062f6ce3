"""The operator's admin key per provider, for its cost report, kept as the inference keys are.

The key is write-only: stored encrypted (under its own purpose, so it can never be opened as an
inference key), shown as its last four characters, and never returned or logged. The admin API
base URL passes the same SSRF guard as a provider's base URL when saved, and again (pinned to
the checked address) on every fetch.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from creditdash.catalog.models import ANTHROPIC_KINDS, SANDBOX_KINDS, Provider
from creditdash.catalog.urlguard import check_base_url
from creditdash.core import crypto
from creditdash.core.audit import Actor, record
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.settings import get_settings
from creditdash.core.timeutil import utcnow
from creditdash.upstream.models import ADMIN_KEY_PURPOSE, UpstreamCostSource

# Where each kind's cost report lives unless the operator says otherwise.
DEFAULT_ADMIN_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
}
MAX_KEY_CHARS = 4000


def report_kind(provider: Provider) -> str:
    """Which cost report API a provider's kind speaks."""
    if provider.kind in SANDBOX_KINDS:
        raise ValidationFailed(f"provider {provider.name} is the built-in sandbox: no cost report")
    return "anthropic" if provider.kind in ANTHROPIC_KINDS else "openai"


def find_provider(session: Session, name: str) -> Provider:
    provider = session.execute(
        select(Provider).where(col(Provider.name) == name.strip())
    ).scalar_one_or_none()
    if provider is None:
        raise NotFound(f"no provider named {name!r}")
    return provider


@dataclass(frozen=True)
class SourceView:
    provider: str
    kind: str
    base_url: str
    key_hint: str


def set_admin_key(
    session: Session, *, provider: str, api_key: str, base_url: str = "", actor: Actor
) -> SourceView:
    """Store (or replace) a provider's admin key and cost report base URL; an empty base URL
    keeps the stored one, or the kind's official API for a new source."""
    found = find_provider(session, provider)
    kind = report_kind(found)
    key = api_key.strip()
    if not key or len(key) > MAX_KEY_CHARS or any(c.isspace() for c in key):
        raise ValidationFailed("the admin key is one word of 1 to 4000 characters")
    assert found.id is not None
    source = session.get(UpstreamCostSource, found.id)
    wanted = base_url.strip() or (source.base_url if source else DEFAULT_ADMIN_BASE_URLS[kind])
    checked = check_base_url(
        wanted, kind=found.kind, allow_private=get_settings().allow_private_upstreams
    )
    before = (
        None
        if source is None
        else {"base_url": source.base_url, "key_last4": source.admin_key_last4}
    )
    source = source or UpstreamCostSource(provider_id=found.id, base_url=checked)
    source.base_url = checked
    source.admin_key_encrypted = crypto.encrypt(key, purpose=ADMIN_KEY_PURPOSE)
    source.admin_key_last4 = key[-4:]
    source.updated_at = utcnow()
    session.add(source)
    session.flush()
    record(
        session,
        actor=actor,
        action="upstream.admin_key",
        target_type="provider",
        target_id=found.name,
        before=before,
        after={"base_url": checked, "key_last4": source.admin_key_last4},
    )
    return SourceView(found.name, kind, checked, f"…{source.admin_key_last4}")


def list_sources(session: Session) -> list[SourceView]:
    rows = session.execute(
        select(UpstreamCostSource, Provider)
        .join(Provider, col(Provider.id) == col(UpstreamCostSource.provider_id))
        .order_by(col(Provider.name))
    ).all()
    return [
        SourceView(p.name, report_kind(p), s.base_url, f"…{s.admin_key_last4}") for s, p in rows
    ]


@dataclass(frozen=True)
class ReportAccess:
    """What a fetch needs; repr never shows the key."""

    provider: str
    provider_id: int
    kind: str
    provider_kind: str
    base_url: str
    admin_key: str

    def __repr__(self) -> str:
        return f"ReportAccess({self.provider!r}, {self.kind!r}, {self.base_url!r})"


def report_access(session: Session, *, provider: str) -> ReportAccess:
    found = find_provider(session, provider)
    kind = report_kind(found)
    assert found.id is not None
    source = session.get(UpstreamCostSource, found.id)
    if source is None or not source.admin_key_encrypted:
        raise ValidationFailed(
            f"provider {found.name} has no admin key for its cost report; "
            "set one with `creditdash upstream set-admin-key`, or import a CSV"
        )
    key = crypto.decrypt(source.admin_key_encrypted, purpose=ADMIN_KEY_PURPOSE)
    return ReportAccess(found.name, found.id, kind, found.kind, source.base_url, key)
