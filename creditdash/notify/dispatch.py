"""Events into emails: who in the workspace hears of what, queued in the outbox once.

Each event is handled in one transaction: it is claimed with a conditional UPDATE on mailed_at
IS NULL (checked by row count, so of two job loops only one goes on), then one OutboxMail per
recipient is queued with the dedupe key "<event id>:<address>". Either all of an event's emails
are queued and it is marked, or nothing is. Types without an email (key.created, key.revoked:
webhooks only; types unknown here) are just marked, and so is an autotopup.failed that paused
the rule: its autotopup.paused email says both, so the members get one email, not two.
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlmodel import Session, col, select

from creditdash.accounts import roles
from creditdash.accounts.models import Customer, Membership, User
from creditdash.core import db
from creditdash.core.outbox import Event, enqueue_mail
from creditdash.core.settings import get_settings
from creditdash.core.timeutil import utcnow
from creditdash.notify import templates

log = logging.getLogger(__name__)

MANAGERS = frozenset({"owner", "admin"})
AUDIENCES: dict[str, frozenset[str]] = {
    "payment.succeeded": roles.MONEY_AUDIENCE,
    "invoice.issued": roles.MONEY_AUDIENCE,
    "refund.succeeded": roles.MONEY_AUDIENCE,
    "balance.low": roles.ALERT_AUDIENCE,
    "budget.threshold": roles.ALERT_AUDIENCE,
    "autotopup.failed": roles.ALERT_AUDIENCE,
    # A paused rule is a money matter: the owners and billing members hear of it.
    "autotopup.paused": roles.MONEY_AUDIENCE,
    "webhook.endpoint_disabled": MANAGERS,
    # A disputed payment (billing/payments/disputes.py): the workspace's owners.
    "dispute.opened": frozenset({"owner"}),
    "dispute.closed": frozenset({"owner"}),
}


def recipients(session: Session, customer_id: str, audience: frozenset[str]) -> list[str]:
    """The addresses of the workspace's active members whose role is in the audience."""
    rows = session.exec(
        select(User.email)
        .join(Membership, col(Membership.user_id) == col(User.id))
        .where(
            col(Membership.customer_id) == customer_id,
            col(Membership.role).in_(sorted(audience)),
            col(User.is_active).is_(True),
        )
        .order_by(col(User.email))
    ).all()
    return sorted(set(rows))


def _claim(session: Session, event_id: str) -> bool:
    result = session.execute(
        update(Event)
        .where(col(Event.id) == event_id, col(Event.mailed_at).is_(None))
        .values(mailed_at=utcnow())
    )
    return db.rowcount(result) == 1


def mail_event(session: Session, event: Event) -> int:
    """Queue the event's emails in the caller's transaction and mark it mailed; the number
    queued (0 when another process had it, or when the type sends no email)."""
    if not _claim(session, event.id):
        return 0
    template = templates.TEMPLATES.get(event.type)
    audience = AUDIENCES.get(event.type)
    if template is None or audience is None or event.customer_id is None:
        return 0
    customer = session.get(Customer, event.customer_id)
    workspace = customer.name if customer is not None else "your workspace"
    rendered = template(event.data(), workspace, get_settings().resolved_public_url())
    if rendered is None:  # the template has nothing to say about this one
        return 0
    queued = 0
    for address in recipients(session, event.customer_id, audience):
        made = enqueue_mail(
            session,
            to=address,
            subject=rendered.subject,
            text=rendered.text,
            kind=event.type,
            customer_id=event.customer_id,
            event_id=event.id,
            attachment=rendered.attachment,
            dedupe_key=f"{event.id}:{address}",
        )
        queued += made is not None
    return queued


def _unmailed(limit: int) -> list[str]:
    with db.session_scope(readonly=True) as session:
        return list(
            session.exec(
                select(Event.id)
                .where(col(Event.mailed_at).is_(None))
                .order_by(col(Event.created_at), col(Event.id))
                .limit(limit)
            ).all()
        )


def mail_events_once(limit: int = 200) -> int:
    """One pass for the jobs loop: each unmailed event in its own transaction (one that fails
    stays unmailed and is tried again next pass); the number of emails queued."""
    queued = 0
    for event_id in _unmailed(limit):
        try:
            with db.session_scope() as session:
                event = session.get(Event, event_id)
                if event is not None:
                    queued += mail_event(session, event)
        except Exception:
            log.exception("could not queue the emails of event %s", event_id)
    return queued
