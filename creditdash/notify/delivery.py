"""Webhook deliveries: events fanned out to endpoints, then POSTed, signed, with retries.

fan_out_once() turns each event not yet hooked into one delivery per enabled endpoint of its
workspace subscribed to its type. The event is claimed by setting hooked_at with a conditional
UPDATE (only one process sees rowcount 1), and (endpoint_id, event_id) is unique, so an event
makes its deliveries exactly once however many processes run the jobs.

deliver_due_once() sends due deliveries. Each attempt is claimed first: a conditional UPDATE
that pushes next_attempt_at a lease ahead and counts the attempt, checked by rowcount, so two
processes never send the same attempt together; the outcome is written with a second
conditional UPDATE. The delivery id is the Standard Webhooks webhook-id: the same on every
retry and resend, so receivers drop duplicates by it.

Retries (the Standard Webhooks schedule): after the first attempt 5 s, 5 min, 30 min, 2 h,
5 h and 10 h, then a last attempt 24 h after the delivery was made; then it is `failed`.
An endpoint is disabled when a delivery to it is given up and no delivery to it succeeded
since that delivery was made, i.e. it failed continuously for 24 hours. Disabling emits
"webhook.endpoint_disabled" through the outbox; the mail dispatcher tells the workspace's
owners and admins (one path for emails, so nobody gets the same news twice).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col
from standardwebhooks.webhooks import Webhook

from creditdash.core import audit, db, outbox
from creditdash.core.db import rowcount
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.ids import new_id
from creditdash.core.outbox import Event
from creditdash.core.timeutil import utcnow
from creditdash.notify import endpoints
from creditdash.notify.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)

RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
)
LAST_ATTEMPT_AFTER = timedelta(hours=24)
# An attempt claimed by a process that died is taken up again after this long.
LEASE = timedelta(minutes=2)
TIMEOUT_S = 10.0
MAX_ERROR = 500
DISABLED_EVENT = "webhook.endpoint_disabled"
TEST_EVENT = "webhook.test"
USER_AGENT = "creditdash-webhooks"


def payload(event: Event) -> str:
    """The body POSTed for an event: the same bytes on every attempt."""
    data = {**event.data(), "customer_id": event.customer_id}
    body = {"type": event.type, "timestamp": event.created_at.isoformat(), "data": data}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _insert_delivery(session: Session, *, endpoint_id: str, event_id: str, now: datetime) -> int:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table: Any = WebhookDelivery.__table__  # type: ignore[attr-defined]
    statement = (
        insert(table)
        .values(
            id=new_id("msg"),
            endpoint_id=endpoint_id,
            event_id=event_id,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            last_status_code=None,
            last_error="",
            last_attempt_at=None,
            delivered_at=None,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
        .returning(table.c.id)
    )
    return 0 if session.execute(statement).scalar_one_or_none() is None else 1


def fan_out_event(session: Session, event_id: str, *, now: datetime | None = None) -> int:
    """Claim one event and make its deliveries (0 when another process claimed it)."""
    now = now or utcnow()
    claimed = session.execute(
        update(Event)
        .where(col(Event.id) == event_id, col(Event.hooked_at).is_(None))
        .values(hooked_at=now)
    )
    if rowcount(claimed) != 1:
        return 0
    event = session.get(Event, event_id)
    assert event is not None
    if event.customer_id is None:
        return 0
    made = 0
    for endpoint in session.execute(
        select(WebhookEndpoint).where(
            col(WebhookEndpoint.customer_id) == event.customer_id,
            col(WebhookEndpoint.enabled).is_(True),
        )
    ).scalars():
        if event.type in endpoints.event_types(endpoint):
            made += _insert_delivery(session, endpoint_id=endpoint.id, event_id=event.id, now=now)
    return made


def fan_out_once(limit: int = 200, *, now: datetime | None = None) -> int:
    """Deliveries made for events not yet hooked, one short transaction per event."""
    with db.session_scope(readonly=True) as session:
        waiting = list(
            session.execute(
                select(col(Event.id))
                .where(col(Event.hooked_at).is_(None))
                .order_by(col(Event.created_at))
                .limit(limit)
            ).scalars()
        )
    made = 0
    for event_id in waiting:
        try:
            with db.session_scope() as session:
                made += fan_out_event(session, event_id, now=now)
        except Exception:
            log.exception("could not fan out event %s", event_id)
    return made


@dataclass(frozen=True)
class _Claim:
    delivery_id: str
    attempt: int
    url: str
    secret: str
    body: str
    created_at: datetime


def _claim(session: Session, delivery_id: str, now: datetime) -> _Claim | None:
    row = session.execute(
        select(WebhookDelivery, WebhookEndpoint, Event)
        .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
        .join(Event, col(Event.id) == col(WebhookDelivery.event_id))
        .where(col(WebhookDelivery.id) == delivery_id)
    ).first()
    if row is None:
        return None
    delivery, endpoint, event = row
    if delivery.status != "pending" or not endpoint.enabled or delivery.next_attempt_at > now:
        return None
    # Read before the UPDATE: the session writes the new values into the loaded row.
    attempts = delivery.attempts
    result = session.execute(
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.id) == delivery.id,
            col(WebhookDelivery.status) == "pending",
            col(WebhookDelivery.attempts) == attempts,
            col(WebhookDelivery.next_attempt_at) <= now,
        )
        .values(attempts=attempts + 1, next_attempt_at=now + LEASE)
    )
    if rowcount(result) != 1:
        return None  # another process took this attempt
    return _Claim(
        delivery_id=delivery.id,
        attempt=attempts + 1,
        url=endpoint.url,
        secret=endpoints.signing_secret(endpoint),
        body=payload(event),
        created_at=delivery.created_at,
    )


def _send(claim: _Claim) -> tuple[int | None, str]:
    """POST once: (status code or None, error text). Redirects are not followed. The
    signature's timestamp is the wall clock (receivers reject stale ones), whatever `now` the
    scheduler was given."""
    try:
        # Checked again (DNS may have changed since it was saved), and the connection goes to
        # the address that was checked.
        target = endpoints.pin_url(claim.url)
    except ValidationFailed as exc:
        return None, exc.message.replace("upstream", "endpoint")
    signed_at = utcnow()
    signature = Webhook(claim.secret).sign(claim.delivery_id, signed_at, claim.body)
    headers = {
        "webhook-id": claim.delivery_id,
        "webhook-timestamp": str(int(signed_at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    extensions: dict[str, str] = {}
    if target.host_header:
        headers["host"] = target.host_header
    if target.tls_server_name:
        extensions["sni_hostname"] = target.tls_server_name
    try:
        with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as client:
            request = client.build_request(
                "POST",
                target.url,
                content=claim.body.encode("utf-8"),
                headers=headers,
                extensions=extensions,
            )
            response = client.send(request)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    if 300 <= response.status_code < 400:
        return response.status_code, "redirects are not followed"
    return response.status_code, f"HTTP {response.status_code}"


def _next_attempt(claim: _Claim, now: datetime) -> datetime | None:
    """When to try again after this failed attempt; None when the schedule is over."""
    if claim.attempt <= len(RETRY_DELAYS):
        return now + RETRY_DELAYS[claim.attempt - 1]
    last = claim.created_at + LAST_ATTEMPT_AFTER
    if claim.attempt == len(RETRY_DELAYS) + 1 and last > now:
        return last
    return None


def _record(
    session: Session, claim: _Claim, code: int | None, error: str, now: datetime, ms: int
) -> None:
    session.add(
        WebhookAttempt(
            delivery_id=claim.delivery_id, at=now, status_code=code, error=error, duration_ms=ms
        )
    )
    delivery = session.get(WebhookDelivery, claim.delivery_id)
    if delivery is None:
        return  # the endpoint was deleted while this attempt was in flight
    ok = code is not None and 200 <= code < 300
    retry_at = None if ok else _next_attempt(claim, now)
    values: dict[str, Any] = {
        "last_status_code": code,
        "last_error": error[:MAX_ERROR],
        "last_attempt_at": now,
    }
    if ok:
        values.update(status="delivered", delivered_at=now)
    elif retry_at is not None:
        values.update(next_attempt_at=retry_at)
    else:
        values.update(status="failed")
    result = session.execute(
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.id) == claim.delivery_id,
            col(WebhookDelivery.status) == "pending",
            col(WebhookDelivery.attempts) == claim.attempt,
        )
        .values(**values)
    )
    if rowcount(result) != 1:
        return  # resent meanwhile: the newer attempt's outcome counts
    failures = 0 if ok else col(WebhookEndpoint.consecutive_failures) + 1
    session.execute(
        update(WebhookEndpoint)
        .where(col(WebhookEndpoint.id) == delivery.endpoint_id)
        .values(consecutive_failures=failures)
    )
    if not ok and retry_at is None:
        _disable_if_failing(session, delivery, now)


def _disable_if_failing(session: Session, delivery: WebhookDelivery, now: datetime) -> None:
    """A delivery was given up: disable its endpoint if nothing reached it since."""
    succeeded = session.execute(
        select(col(WebhookDelivery.id)).where(
            col(WebhookDelivery.endpoint_id) == delivery.endpoint_id,
            col(WebhookDelivery.delivered_at) >= delivery.created_at,
        )
    ).first()
    if succeeded is not None:
        return
    reason = "every delivery failed for 24 hours"
    result = session.execute(
        update(WebhookEndpoint)
        .where(
            col(WebhookEndpoint.id) == delivery.endpoint_id,
            col(WebhookEndpoint.enabled).is_(True),
        )
        .values(enabled=False, disabled_reason=reason)
    )
    if rowcount(result) != 1:
        return
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    assert endpoint is not None
    audit.record(
        session,
        actor=audit.SYSTEM,
        action="webhook_endpoint.disable",
        target_type="webhook_endpoint",
        target_id=endpoint.id,
        reason=reason,
    )
    outbox.emit(
        session,
        type=DISABLED_EVENT,
        customer_id=endpoint.customer_id,
        data={"endpoint_id": endpoint.id, "url": endpoint.url, "reason": reason},
    )


def deliver(delivery_id: str, *, now: datetime | None = None) -> bool:
    """One attempt of one delivery, if it is due and this process wins it; whether it ran."""
    now = now or utcnow()
    with db.session_scope() as session:
        claim = _claim(session, delivery_id, now)
    if claim is None:
        return False
    started = time.monotonic()
    code, error = _send(claim)
    ms = int((time.monotonic() - started) * 1000)
    with db.session_scope() as session:
        _record(session, claim, code, error, now, ms)
    return True


def deliver_due_once(limit: int = 50, *, now: datetime | None = None) -> int:
    """Attempts made for due deliveries of enabled endpoints (one at a time, each claimed)."""
    now = now or utcnow()
    with db.session_scope(readonly=True) as session:
        due = list(
            session.execute(
                select(col(WebhookDelivery.id))
                .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
                .where(
                    col(WebhookDelivery.status) == "pending",
                    col(WebhookDelivery.next_attempt_at) <= now,
                    col(WebhookEndpoint.enabled).is_(True),
                )
                .order_by(col(WebhookDelivery.next_attempt_at))
                .limit(limit)
            ).scalars()
        )
    sent = 0
    for delivery_id in due:
        try:
            sent += deliver(delivery_id, now=now)
        except Exception:
            log.exception("webhook delivery %s failed unexpectedly", delivery_id)
    return sent


def resend(
    session: Session,
    *,
    delivery_id: str,
    customer_id: str | None,
    user_id: int | None = None,
) -> WebhookDelivery:
    """Send a delivery again soon (also a failed or delivered one), with the same webhook-id.
    A resent delivery that fails again after its schedule is over goes back to failed."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise NotFound("webhook delivery not found")
    endpoint = endpoints.get_endpoint(
        session, endpoint_id=delivery.endpoint_id, customer_id=customer_id
    )
    actor = endpoints.actor_for(session, user_id=user_id, customer_id=endpoint.customer_id)
    before = {"status": delivery.status, "attempts": delivery.attempts}
    result = session.execute(
        update(WebhookDelivery)
        .where(
            col(WebhookDelivery.id) == delivery.id,
            col(WebhookDelivery.attempts) == delivery.attempts,
        )
        .values(status="pending", next_attempt_at=utcnow(), delivered_at=None)
    )
    if rowcount(result) != 1:
        raise ValidationFailed("the delivery is being attempted right now; try again shortly")
    audit.record(
        session,
        actor=actor,
        action="webhook_delivery.resend",
        target_type="webhook_delivery",
        target_id=delivery.id,
        before=before,
    )
    session.refresh(delivery)
    return delivery


def send_test_event(
    session: Session, *, endpoint_id: str, customer_id: str | None, user_id: int | None = None
) -> WebhookDelivery:
    """A "webhook.test" event delivered to this endpoint only (whatever it subscribes to)."""
    endpoint = endpoints.get_endpoint(session, endpoint_id=endpoint_id, customer_id=customer_id)
    endpoints.actor_for(session, user_id=user_id, customer_id=endpoint.customer_id)
    if not endpoint.enabled:
        raise ValidationFailed("enable the endpoint before sending it a test event")
    now = utcnow()
    event_id = outbox.emit(
        session,
        type=TEST_EVENT,
        customer_id=endpoint.customer_id,
        data={"endpoint_id": endpoint.id, "message": "a test event from creditdash"},
    )
    assert event_id is not None
    # Hooked at once: the fan-out must not send it to the workspace's other endpoints.
    session.execute(update(Event).where(col(Event.id) == event_id).values(hooked_at=now))
    _insert_delivery(session, endpoint_id=endpoint.id, event_id=event_id, now=now)
    delivery = session.execute(
        select(WebhookDelivery).where(
            col(WebhookDelivery.endpoint_id) == endpoint.id,
            col(WebhookDelivery.event_id) == event_id,
        )
    ).scalar_one()
    return delivery


@dataclass(frozen=True)
class DeliveryView:
    """A delivery as the log shows it."""

    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str
    last_attempt_at: datetime | None
    next_attempt_at: datetime
    delivered_at: datetime | None
    created_at: datetime
    payload: str


def list_deliveries(
    session: Session,
    *,
    customer_id: str,
    endpoint_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[DeliveryView]:
    """The workspace's deliveries, newest first."""
    if status is not None and status not in ("pending", "delivered", "failed"):
        raise ValidationFailed("status is one of pending, delivered, failed")
    conditions = [col(WebhookEndpoint.customer_id) == customer_id]
    if endpoint_id is not None:
        conditions.append(col(WebhookDelivery.endpoint_id) == endpoint_id)
    if status is not None:
        conditions.append(col(WebhookDelivery.status) == status)
    rows = session.execute(
        select(WebhookDelivery, Event)
        .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
        .join(Event, col(Event.id) == col(WebhookDelivery.event_id))
        .where(*conditions)
        .order_by(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id))
        .limit(max(1, min(limit, 500)))
    ).all()
    return [
        DeliveryView(
            id=d.id,
            endpoint_id=d.endpoint_id,
            event_id=d.event_id,
            event_type=e.type,
            status=d.status,
            attempts=d.attempts,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            last_attempt_at=d.last_attempt_at,
            next_attempt_at=d.next_attempt_at,
            delivered_at=d.delivered_at,
            created_at=d.created_at,
            payload=payload(e),
        )
        for d, e in rows
    ]


def list_attempts(session: Session, *, delivery_id: str) -> list[WebhookAttempt]:
    return list(
        session.execute(
            select(WebhookAttempt)
            .where(col(WebhookAttempt.delivery_id) == delivery_id)
            .order_by(col(WebhookAttempt.at), col(WebhookAttempt.id))
        ).scalars()
    )
