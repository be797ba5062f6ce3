"""A workspace's webhook endpoints: add, list, change, rotate the secret, delete.

The signing secret is the Standard Webhooks format, "whsec_" + base64 of 24 random bytes. It
is returned once (by add_endpoint and rotate_secret) and stored encrypted like provider keys;
nothing here logs it or returns it again. Every change is audited. When a user is given, the
role table (accounts/roles) must allow webhooks.manage; the command line passes no user.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import delete, select, update
from sqlmodel import Session, col

from creditdash.accounts import roles
from creditdash.accounts.models import Customer, User
from creditdash.catalog import urlguard
from creditdash.core import audit, crypto
from creditdash.core.db import rowcount
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.ids import new_id
from creditdash.core.outbox import WEBHOOK_EVENT_TYPES
from creditdash.core.settings import get_settings
from creditdash.notify.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

CIPHER_PURPOSE = "webhook-secret"
WHSEC_PREFIX = "whsec_"
MAX_URL = 2000
MAX_DESCRIPTION = 200
MAX_ENDPOINTS = 20


def new_secret() -> str:
    return WHSEC_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def signing_secret(endpoint: WebhookEndpoint) -> str:
    """The plain secret, for signing a delivery (never shown or logged)."""
    return crypto.decrypt(endpoint.secret, purpose=CIPHER_PURPOSE)


def check_url(url: str) -> str:
    """The URL to POST to, or ValidationFailed saying why it may not be called. https only;
    http only when private upstreams are allowed (local receivers in development and tests).
    The host goes through the same SSRF guard as provider base URLs."""
    url = (url or "").strip()
    if not url or len(url) > MAX_URL:
        raise ValidationFailed(f"an endpoint URL is 1-{MAX_URL} characters")
    allow_private = get_settings().allow_private_upstreams
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and allow_private):
        raise ValidationFailed("an endpoint URL must use https")
    if parts.username or parts.password:
        raise ValidationFailed("an endpoint URL must not contain credentials")
    if parts.fragment:
        raise ValidationFailed("an endpoint URL must not have a fragment")
    if not parts.hostname:
        raise ValidationFailed("an endpoint URL has no host")
    try:
        urlguard.check_base_url(
            f"{parts.scheme}://{parts.netloc}", kind="webhook", allow_private=allow_private
        )
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message.replace("upstream", "endpoint")) from None
    return url


@dataclass(frozen=True)
class PinnedEndpoint:
    """Where to connect for one delivery: the URL with its host replaced by the address that
    passed the guard, and the name kept for the Host header and TLS (SNI and certificate)."""

    url: str
    host_header: str | None = None
    tls_server_name: str | None = None


def pin_url(url: str) -> PinnedEndpoint:
    """check_url, then pin the connection to the address that was checked: a DNS answer that
    changes between the check and the connection (rebinding) cannot send the request to a
    private address."""
    url = check_url(url)
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    pinned = urlguard.pin_base_url(
        origin, kind="webhook", allow_private=get_settings().allow_private_upstreams
    )
    rest = urlunsplit(("", "", parts.path, parts.query, ""))
    return PinnedEndpoint(pinned.base_url + rest, pinned.host_header, pinned.tls_server_name)


def check_event_types(event_types: list[str] | tuple[str, ...]) -> list[str]:
    chosen = sorted({t.strip() for t in event_types if t.strip()})
    if not chosen:
        raise ValidationFailed("choose at least one event type: " + ", ".join(WEBHOOK_EVENT_TYPES))
    for name in chosen:
        if name not in WEBHOOK_EVENT_TYPES:
            raise ValidationFailed(
                f"unknown event type {name!r}; known: " + ", ".join(WEBHOOK_EVENT_TYPES)
            )
    return chosen


def event_types(endpoint: WebhookEndpoint) -> list[str]:
    loaded = json.loads(endpoint.event_types_json)
    assert isinstance(loaded, list)
    return [str(t) for t in loaded]


def actor_for(session: Session, *, user_id: int | None, customer_id: str) -> audit.Actor:
    if user_id is None:
        return audit.CLI
    roles.require(session, user_id=user_id, customer_id=customer_id, permission="webhooks.manage")
    user = session.get(User, user_id)
    assert user is not None
    return audit.Actor.user(user_id, user.email)


def _summary(endpoint: WebhookEndpoint) -> dict[str, object]:
    # What the audit log keeps of an endpoint: never the secret.
    return {
        "url": endpoint.url,
        "event_types": event_types(endpoint),
        "enabled": endpoint.enabled,
        "description": endpoint.description,
    }


def add_endpoint(
    session: Session,
    *,
    customer_id: str,
    url: str,
    event_types: list[str] | tuple[str, ...],
    description: str = "",
    user_id: int | None = None,
) -> tuple[WebhookEndpoint, str]:
    """A new enabled endpoint and its signing secret (shown this once)."""
    actor = actor_for(session, user_id=user_id, customer_id=customer_id)
    if session.get(Customer, customer_id) is None:
        raise NotFound("customer not found")
    description = " ".join((description or "").split())
    if len(description) > MAX_DESCRIPTION:
        raise ValidationFailed(f"a description is at most {MAX_DESCRIPTION} characters")
    checked_url = check_url(url)
    chosen = check_event_types(event_types)
    if len(list_endpoints(session, customer_id=customer_id)) >= MAX_ENDPOINTS:
        raise ValidationFailed(f"a workspace has at most {MAX_ENDPOINTS} webhook endpoints")
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=new_id("whe"),
        customer_id=customer_id,
        url=checked_url,
        description=description,
        secret=crypto.encrypt(secret, purpose=CIPHER_PURPOSE),
        event_types_json=json.dumps(chosen),
        created_by_user_id=user_id,
    )
    session.add(endpoint)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="webhook_endpoint.create",
        target_type="webhook_endpoint",
        target_id=endpoint.id,
        after=_summary(endpoint),
    )
    return endpoint, secret


def list_endpoints(session: Session, *, customer_id: str) -> list[WebhookEndpoint]:
    return list(
        session.execute(
            select(WebhookEndpoint)
            .where(col(WebhookEndpoint.customer_id) == customer_id)
            .order_by(col(WebhookEndpoint.created_at), col(WebhookEndpoint.id))
        ).scalars()
    )


def get_endpoint(session: Session, *, endpoint_id: str, customer_id: str | None) -> WebhookEndpoint:
    """The endpoint; another workspace's endpoint is simply not found (customer_id None: the
    operator's command line, any workspace)."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or (customer_id is not None and endpoint.customer_id != customer_id):
        raise NotFound("webhook endpoint not found")
    return endpoint


def update_endpoint(
    session: Session,
    *,
    endpoint_id: str,
    customer_id: str | None,
    event_types: list[str] | tuple[str, ...] | None = None,
    enabled: bool | None = None,
    user_id: int | None = None,
) -> WebhookEndpoint:
    """Change the subscribed events and/or enable or disable. Enabling clears the failure
    count and the reason it was disabled."""
    endpoint = get_endpoint(session, endpoint_id=endpoint_id, customer_id=customer_id)
    actor = actor_for(session, user_id=user_id, customer_id=endpoint.customer_id)
    before = _summary(endpoint)
    values: dict[str, object] = {}
    if event_types is not None:
        values["event_types_json"] = json.dumps(check_event_types(event_types))
    if enabled is not None:
        values["enabled"] = enabled
        if enabled:
            values["disabled_reason"] = ""
            values["consecutive_failures"] = 0
        else:
            values["disabled_reason"] = "disabled by a member"
    if not values:
        raise ValidationFailed("nothing to change")
    result = session.execute(
        update(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint.id).values(**values)
    )
    if rowcount(result) != 1:
        raise NotFound("webhook endpoint not found")
    session.refresh(endpoint)
    audit.record(
        session,
        actor=actor,
        action="webhook_endpoint.update",
        target_type="webhook_endpoint",
        target_id=endpoint.id,
        before=before,
        after=_summary(endpoint),
    )
    return endpoint


def rotate_secret(
    session: Session, *, endpoint_id: str, customer_id: str | None, user_id: int | None = None
) -> str:
    """A new signing secret (shown this once); the old one stops signing at once."""
    endpoint = get_endpoint(session, endpoint_id=endpoint_id, customer_id=customer_id)
    actor = actor_for(session, user_id=user_id, customer_id=endpoint.customer_id)
    secret = new_secret()
    result = session.execute(
        update(WebhookEndpoint)
        .where(col(WebhookEndpoint.id) == endpoint.id)
        .values(secret=crypto.encrypt(secret, purpose=CIPHER_PURPOSE))
    )
    if rowcount(result) != 1:
        raise NotFound("webhook endpoint not found")
    audit.record(
        session,
        actor=actor,
        action="webhook_endpoint.rotate_secret",
        target_type="webhook_endpoint",
        target_id=endpoint.id,
    )
    return secret


def delete_endpoint(
    session: Session, *, endpoint_id: str, customer_id: str | None, user_id: int | None = None
) -> None:
    """Delete the endpoint with its delivery log."""
    endpoint = get_endpoint(session, endpoint_id=endpoint_id, customer_id=customer_id)
    actor = actor_for(session, user_id=user_id, customer_id=endpoint.customer_id)
    before = _summary(endpoint)
    deliveries = select(col(WebhookDelivery.id)).where(
        col(WebhookDelivery.endpoint_id) == endpoint.id
    )
    session.execute(delete(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(deliveries)))
    session.execute(delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint.id))
    result = session.execute(delete(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint.id))
    if rowcount(result) != 1:
        raise NotFound("webhook endpoint not found")
    audit.record(
        session,
        actor=actor,
        action="webhook_endpoint.delete",
        target_type="webhook_endpoint",
        target_id=endpoint.id,
        before=before,
    )
