"""The SMTP sender: hands the outbox's pending emails to the configured mail server.

A row is claimed before it is sent with a conditional UPDATE that moves its next attempt into
the future (a lease) and counts the attempt; only the process whose UPDATE matched the row
sends it, so two job loops never send the same email twice. A crash after the server accepted
the message but before sent_at was written resends it when the lease runs out; the Message-ID
is derived from the row id, so the receiving side can recognise the duplicate.

Without CREDITDASH_SMTP_URL nothing is sent: the rows wait in the outbox, which the admin
workspace shows as the development inbox.
"""

from __future__ import annotations

import ipaddress
import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

from sqlalchemy import update
from sqlmodel import Session, col, select

from creditdash.billing.invoicing import invoices
from creditdash.core import db
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.outbox import MAIL_STATUSES, OutboxMail
from creditdash.core.settings import get_settings
from creditdash.core.timeutil import utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
FIRST_RETRY = timedelta(minutes=1)
MAX_RETRY = timedelta(hours=1)
# Long enough for one send to finish; a row still leased after it was crashed on.
LEASE = timedelta(minutes=5)
SMTP_TIMEOUT_S = 30


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    username: str
    password: str


def parse_smtp_url(url: str) -> SmtpTarget:
    """smtp://[user:pass@]host[:port] (STARTTLS when offered) or smtps://... (TLS at once)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValidationFailed(f"CREDITDASH_SMTP_URL is not a valid URL ({exc})") from None
    if parts.scheme not in ("smtp", "smtps"):
        raise ValidationFailed("CREDITDASH_SMTP_URL must start with smtp:// or smtps://")
    if not parts.hostname:
        raise ValidationFailed("CREDITDASH_SMTP_URL names no host")
    implicit = parts.scheme == "smtps"
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if implicit else 587),
        implicit_tls=implicit,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


def is_configured() -> bool:
    return bool(get_settings().smtp_url.strip())


def check_configuration() -> SmtpTarget:
    """The configured server; ValidationFailed when the URL is missing or malformed."""
    if not is_configured():
        raise ValidationFailed("CREDITDASH_SMTP_URL is not set")
    return parse_smtp_url(get_settings().smtp_url)


def message_id(row_id: int) -> str:
    """The same id for every attempt of one row: a resend after a crash is a recognisable
    duplicate, not a second email."""
    return f"<outbox-{row_id}@creditdash.local>"


def backoff(attempts: int) -> timedelta:
    """1 min after the first failure, doubling, never more than an hour."""
    return min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), MAX_RETRY)


def _attachment(session: Session, ref: str) -> tuple[bytes, str, str, str]:
    kind, _, value = ref.partition(":")
    if kind != "invoice" or not value:
        raise ValidationFailed(f"unknown attachment {ref!r}")
    issued = invoices.get_by_number(session, value)
    # Imported on first use: fpdf2 and its fonts add about 40 MiB to a process that never
    # renders a document.
    from creditdash.billing.invoicing import pdf

    return pdf.render_pdf(issued), "application", "pdf", f"{issued.invoice.number}.pdf"


def build_message(session: Session, row: OutboxMail, sender: str) -> EmailMessage:
    assert row.id is not None
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row.to_addr
    message["Subject"] = row.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id(row.id)
    message.set_content(row.body_text)
    if row.attachment:
        data, main, sub, filename = _attachment(session, row.attachment)
        message.add_attachment(data, maintype=main, subtype=sub, filename=filename)
    return message


def _deliver(target: SmtpTarget, message: EmailMessage) -> None:
    context = ssl.create_default_context()
    if target.implicit_tls:
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            target.host, target.port, timeout=SMTP_TIMEOUT_S, context=context
        )
    else:
        client = smtplib.SMTP(target.host, target.port, timeout=SMTP_TIMEOUT_S)
    with client:
        client.ehlo()
        encrypted = target.implicit_tls
        if not encrypted and client.has_extn("starttls"):
            client.starttls(context=context)
            client.ehlo()
            encrypted = True
        if target.username:
            if not encrypted and not _is_loopback(target.host):
                # A server (or someone between) that leaves out STARTTLS must not get the
                # password in clear: the mail stays queued and the error says why.
                raise smtplib.SMTPException(
                    f"{target.host} does not offer STARTTLS; not sending the SMTP password "
                    "unencrypted (use smtps:// or a server with STARTTLS)"
                )
            client.login(target.username, target.password)
        client.send_message(message)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _due_ids(limit: int, now: datetime) -> list[int]:
    with db.session_scope(readonly=True) as session:
        rows = session.exec(
            select(OutboxMail.id)
            .where(col(OutboxMail.status) == "pending", col(OutboxMail.next_attempt_at) <= now)
            .order_by(col(OutboxMail.next_attempt_at), col(OutboxMail.id))
            .limit(limit)
        ).all()
    return [r for r in rows if r is not None]


def _claim(row_id: int, now: datetime) -> bool:
    """Lease the row: only the process whose UPDATE matched it goes on to send it."""
    with db.session_scope() as session:
        result = session.execute(
            update(OutboxMail)
            .where(
                col(OutboxMail.id) == row_id,
                col(OutboxMail.status) == "pending",
                col(OutboxMail.next_attempt_at) <= now,
            )
            .values(attempts=col(OutboxMail.attempts) + 1, next_attempt_at=now + LEASE)
        )
        return db.rowcount(result) == 1


def _finish(row_id: int, error: str | None) -> None:
    now = utcnow()
    with db.session_scope() as session:
        row = session.get(OutboxMail, row_id)
        if row is None:
            return
        if error is None:
            row.status, row.sent_at, row.last_error = "sent", now, ""
        else:
            row.last_error = error[:500]
            if row.attempts >= MAX_ATTEMPTS:
                row.status = "failed"
            else:
                row.next_attempt_at = now + backoff(row.attempts)
        session.add(row)


def _send_one(row_id: int, target: SmtpTarget, sender: str) -> bool:
    try:
        with db.session_scope(readonly=True) as session:
            row = session.get(OutboxMail, row_id)
            if row is None:
                return False
            message = build_message(session, row, sender)
        _deliver(target, message)
    except (smtplib.SMTPException, OSError, ValidationFailed, NotFound) as exc:
        text = exc.message if isinstance(exc, ValidationFailed | NotFound) else repr(exc)
        log.warning("mail %s not sent: %s", row_id, text)
        _finish(row_id, text)
        return False
    _finish(row_id, None)
    return True


def send_due_mail(limit: int = 50) -> int:
    """One pass of the sender: the pending rows that are due, each claimed, sent and marked.
    The number sent; 0 without SMTP configured (the mail waits in the outbox)."""
    settings = get_settings()
    if not settings.smtp_url.strip():
        return 0
    try:
        target = parse_smtp_url(settings.smtp_url)
    except ValidationFailed as exc:
        # A configuration mistake: said in the log every pass, the rows stay pending.
        log.error("mail not sent: %s", exc.message)
        return 0
    sent = 0
    now = utcnow()
    for row_id in _due_ids(limit, now):
        if _claim(row_id, now):
            sent += _send_one(row_id, target, settings.mail_from)
    return sent


def get(session: Session, mail_id: int) -> OutboxMail:
    row = session.get(OutboxMail, mail_id)
    if row is None:
        raise NotFound(f"no outbox mail {mail_id}")
    return row


def retry_now(session: Session, mail_id: int) -> OutboxMail:
    """The operator's "retry now": a pending or failed row becomes due at once (with a fresh
    attempt budget when it had failed). A sent row is refused: it would be a second email."""
    row = get(session, mail_id)
    if row.status == "sent":
        raise ValidationFailed("that email was already sent")
    if row.status == "failed":
        row.attempts = 0
    row.status, row.next_attempt_at = "pending", utcnow()
    session.add(row)
    return row


def outbox(session: Session, *, status: str | None = None, limit: int = 100) -> list[OutboxMail]:
    """The outbox, newest first, optionally of one status."""
    if status is not None and status not in MAIL_STATUSES:
        raise ValidationFailed(f"status is one of {', '.join(MAIL_STATUSES)}")
    if not 1 <= limit <= 1000:
        raise ValidationFailed("limit is 1-1000")
    query = select(OutboxMail)
    if status is not None:
        query = query.where(col(OutboxMail.status) == status)
    query = query.order_by(col(OutboxMail.created_at).desc(), col(OutboxMail.id).desc())
    return list(session.exec(query.limit(limit)).all())


def describe(row: OutboxMail) -> dict[str, str | int]:
    """One outbox row as plain values, for the CLI's JSON and the admin inbox."""
    return {
        "id": row.id or 0,
        "to": row.to_addr,
        "subject": row.subject,
        "kind": row.kind,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "attachment": row.attachment or "",
        "created_at": row.created_at.isoformat(),
        "next_attempt_at": row.next_attempt_at.isoformat(),
        "sent_at": row.sent_at.isoformat() if row.sent_at else "",
    }


NOT_CONFIGURED = "Mail is not being sent: CREDITDASH_SMTP_URL is not set."
