"""Events become emails for the right members, and the sender delivers each exactly once."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from creditdash.accounts import invites, users
from creditdash.accounts.customers import customers_of_user
from creditdash.accounts.models import Membership
from creditdash.core import db, outbox, settings
from creditdash.core.audit import Actor
from creditdash.core.errors import CreditdashError, ValidationFailed
from creditdash.core.outbox import Event, OutboxMail
from creditdash.core.timeutil import utcnow
from creditdash.notify import dispatch, mail
from tests.billing.shop import Shop, session_event
from tests.factories import signed_up
from tests.notify import smtp
from tests.notify.smtp import Inbox


def _emit(customer_id: str, type: str, data: dict[str, object]) -> str:
    with db.session_scope() as session:
        event_id = outbox.emit(session, type=type, customer_id=customer_id, data=data)
    assert event_id is not None
    return event_id


def _member(customer_id: str, email: str, role: str) -> None:
    with db.session_scope() as session:
        user = users.create_user(session, email=email, password=None)
        assert user.id is not None
        session.add(Membership(customer_id=customer_id, user_id=user.id, role=role))


def _rows() -> list[OutboxMail]:
    with db.session_scope(readonly=True) as session:
        return list(session.exec(select(OutboxMail).order_by(col(OutboxMail.id))).all())


PAYMENT = {
    "order_id": "ord_1",
    "package": "Growth",
    "quantity": 1,
    "credits_micros": 55_000_000,
    "amount_minor": 5950,
    "currency": "EUR",
    "invoice_number": "CD-2026-000001",
}


def test_payment_mail_reaches_the_owner_once(engine: Engine, smtp_inbox: Inbox) -> None:
    _, customer_id = signed_up("owner@example.com")
    _member(customer_id, "admin@example.com", "admin")  # not in the money audience
    _emit(customer_id, "payment.succeeded", PAYMENT)

    assert dispatch.mail_events_once() == 1
    assert dispatch.mail_events_once() == 0  # the event is marked: no second email
    assert mail.send_due_mail() == 1
    assert mail.send_due_mail() == 0

    [message] = smtp_inbox.messages
    assert message["To"] == "owner@example.com"
    assert message["From"] == "creditdash <billing@example.com>"
    assert message["Subject"] == "Payment received: 59.50 EUR"
    [row] = _rows()
    assert message["Message-ID"] == mail.message_id(row.id or 0)
    body = message.get_content()
    assert "59.50 EUR" in body and "55.000000 credits" in body and "Acme Labs" in body
    assert row.status == "sent" and row.sent_at is not None and row.attempts == 1


def test_dispatch_of_one_event_by_two_loops_queues_one_mail_per_member(engine: Engine) -> None:
    _, customer_id = signed_up("owner@example.com")
    _member(customer_id, "money@example.com", "billing")
    _member(customer_id, "dev@example.com", "developer")  # not told about money
    event_id = _emit(customer_id, "refund.succeeded", {"amount_minor": 500, "currency": "EUR"})
    # Both loops read the event before either marked it; the claim lets only one through.
    with db.session_scope(readonly=True) as session:
        seen = session.get(Event, event_id)
    assert seen is not None and seen.mailed_at is None
    with db.session_scope() as first:
        assert dispatch.mail_event(first, seen) == 2
    with db.session_scope() as second:
        assert dispatch.mail_event(second, seen) == 0
    assert sorted(r.to_addr for r in _rows()) == ["money@example.com", "owner@example.com"]
    assert all(r.dedupe_key == f"{event_id}:{r.to_addr}" for r in _rows())


def test_alerts_go_to_managers_and_types_without_mail_are_only_marked(engine: Engine) -> None:
    _, customer_id = signed_up("owner@example.com")
    _member(customer_id, "admin@example.com", "admin")
    _member(customer_id, "dev@example.com", "developer")
    _emit(
        customer_id, "balance.low", {"available_micros": 2_000_000, "threshold_micros": 5_000_000}
    )
    _emit(customer_id, "key.created", {"key_id": "k"})
    _emit(customer_id, "something.new", {})
    assert dispatch.mail_events_once() == 2
    assert sorted(r.to_addr for r in _rows()) == ["admin@example.com", "owner@example.com"]
    assert "2.000000 credits" in _rows()[0].body_text
    with db.session_scope(readonly=True) as session:
        assert all(e.mailed_at is not None for e in session.exec(select(Event)).all())


def test_without_smtp_nothing_is_sent_and_mail_waits(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDITDASH_SMTP_URL", raising=False)
    settings.reset_settings()
    _, customer_id = signed_up("owner@example.com")
    _emit(customer_id, "payment.succeeded", PAYMENT)
    assert dispatch.mail_events_once() == 1
    assert mail.send_due_mail() == 0
    [row] = _rows()
    assert row.status == "pending" and row.attempts == 0


def test_a_server_that_is_down_means_retry_later_then_sent_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = smtp.free_port()
    monkeypatch.setenv("CREDITDASH_SMTP_URL", f"smtp://127.0.0.1:{port}")
    settings.reset_settings()
    _, customer_id = signed_up("owner@example.com")
    _emit(customer_id, "payment.succeeded", PAYMENT)
    dispatch.mail_events_once()

    before = utcnow()
    assert mail.send_due_mail() == 0  # nobody listens on the port
    [row] = _rows()
    assert row.status == "pending" and row.attempts == 1 and row.last_error
    assert row.next_attempt_at >= before + timedelta(seconds=50)
    assert mail.send_due_mail() == 0  # not due yet: no attempt

    controller, inbox = smtp.start(port=port)
    try:
        with db.session_scope() as session:
            mail.retry_now(session, row.id or 0)
        assert mail.send_due_mail() == 1
        assert mail.send_due_mail() == 0
    finally:
        controller.stop()
    assert len(inbox.messages) == 1
    [row] = _rows()
    assert row.status == "sent" and row.attempts == 2


def test_after_the_last_attempt_the_row_is_failed_and_kept(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITDASH_SMTP_URL", f"smtp://127.0.0.1:{smtp.free_port()}")
    settings.reset_settings()
    with db.session_scope() as session:
        outbox.enqueue_mail(session, to="a@example.com", subject="s", text="t", kind="test")
    for _ in range(mail.MAX_ATTEMPTS):
        with db.session_scope() as session:
            row = session.exec(select(OutboxMail)).one()
            row.next_attempt_at = utcnow() - timedelta(seconds=1)
            session.add(row)
        mail.send_due_mail()
    [row] = _rows()
    assert row.status == "failed" and row.attempts == mail.MAX_ATTEMPTS
    with db.session_scope() as session:
        mail.retry_now(session, row.id or 0)
    [row] = _rows()
    assert row.status == "pending" and row.attempts == 0


def test_sent_mail_cannot_be_retried(engine: Engine, smtp_inbox: Inbox) -> None:
    with db.session_scope() as session:
        outbox.enqueue_mail(session, to="a@example.com", subject="s", text="t", kind="test")
    assert mail.send_due_mail() == 1
    with db.session_scope() as session, pytest.raises(ValidationFailed, match="already sent"):
        mail.retry_now(session, _rows()[0].id or 0)


def test_smtp_auth_logs_in(sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    controller, inbox = smtp.start(with_auth=True)
    try:
        url = f"smtp://{smtp.USER}:{smtp.PASSWORD}@127.0.0.1:{inbox.port}"
        monkeypatch.setenv("CREDITDASH_SMTP_URL", url)
        settings.reset_settings()
        with db.session_scope() as session:
            outbox.enqueue_mail(session, to="a@example.com", subject="hi", text="t", kind="test")
        assert mail.send_due_mail() == 1
    finally:
        controller.stop()
    assert [m["To"] for m in inbox.messages] == ["a@example.com"]


def test_a_bad_smtp_url_is_a_clear_error_and_changes_nothing(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationFailed, match="smtp://"):
        mail.parse_smtp_url("http://mail.example.com")
    with pytest.raises(ValidationFailed, match="not a valid URL"):
        mail.parse_smtp_url("smtp://host:notaport")
    assert mail.parse_smtp_url("smtps://u%40x:p@mail.example.com").port == 465
    monkeypatch.setenv("CREDITDASH_SMTP_URL", "smtp://host:notaport")
    settings.reset_settings()
    with db.session_scope() as session:
        outbox.enqueue_mail(session, to="a@example.com", subject="s", text="t", kind="test")
    assert mail.send_due_mail() == 0
    [row] = _rows()
    assert row.status == "pending" and row.attempts == 0


def test_invoice_mail_carries_the_pdf(shop: Shop, smtp_inbox: Inbox) -> None:
    _member(shop.customer_id, "books@example.com", "owner")
    order = shop.order("Growth")
    shop.post_event(session_event(order))
    dispatch.mail_events_once()
    assert mail.send_due_mail() >= 2  # the payment and the invoice, to each owner
    [invoice, payment] = sorted(smtp_inbox.to("books@example.com"), key=lambda m: m["Subject"])
    assert invoice["Subject"].startswith("Invoice CD-")
    [attached] = list(invoice.iter_attachments())
    assert attached.get_content_type() == "application/pdf"
    assert attached.get_content().startswith(b"%PDF")
    assert "/billing/invoices/CD-" in invoice.get_body(("plain",)).get_content()
    assert payment["Subject"].startswith("Payment received")


def test_cli_outbox_json_and_send_now(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from creditdash.cli import main

    monkeypatch.delenv("CREDITDASH_SMTP_URL", raising=False)
    settings.reset_settings()
    with db.session_scope() as session:
        outbox.enqueue_mail(session, to="a@example.com", subject="Hi", text="t", kind="test")
    listed = CliRunner().invoke(main, ["mail", "outbox", "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert (row["to"], row["subject"], row["status"], row["attempts"]) == (
        "a@example.com",
        "Hi",
        "pending",
        0,
    )
    assert (
        json.loads(
            CliRunner().invoke(main, ["mail", "outbox", "--status", "sent", "--json"]).output
        )
        == []
    )
    refused = CliRunner().invoke(main, ["mail", "send-now"])
    assert refused.exit_code == 1 and "CREDITDASH_SMTP_URL is not set" in refused.output

    controller, inbox = smtp.start()
    try:
        monkeypatch.setenv("CREDITDASH_SMTP_URL", f"smtp://127.0.0.1:{inbox.port}")
        settings.reset_settings()
        sent = CliRunner().invoke(main, ["mail", "send-now"])
    finally:
        controller.stop()
    assert sent.exit_code == 0 and sent.output.strip() == "sent 1 email"
    assert len(inbox.messages) == 1
    monkeypatch.setenv("CREDITDASH_SMTP_URL", "ftp://nope")
    settings.reset_settings()
    broken = CliRunner().invoke(main, ["mail", "send-now"])
    assert broken.exit_code == 1 and "smtp://" in broken.output


def test_an_invitation_arrives_by_smtp_and_its_link_joins_the_workspace(
    engine: Engine, smtp_inbox: Inbox
) -> None:
    owner_id, customer_id = signed_up("owner@example.com")
    with db.session_scope() as session:
        invites.create_invite(
            session,
            customer_id=customer_id,
            inviter=Actor.user(owner_id, "owner@example.com"),
            email="Mate@Example.com",
            role="billing",
        )
    assert mail.send_due_mail() == 1
    [message] = smtp_inbox.to("mate@example.com")
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    found = re.search(r"https?://\S+/invite\?token=([\w-]+)", body.get_content())
    assert found and "Acme Labs" in str(message["Subject"])
    with db.session_scope() as session:
        user = invites.accept_invite_as_new_user(
            session, token=found.group(1), password="a-long-password-2"
        )
        assert user.id is not None
        user_id = user.id
    with db.session_scope(readonly=True) as session:
        assert [(c.id, role) for c, role in customers_of_user(session, user_id)] == [
            (customer_id, "billing")
        ]
    with pytest.raises(CreditdashError), db.session_scope() as session:  # the link works once
        invites.accept_invite_as_new_user(session, token=found.group(1), password="x" * 12)
