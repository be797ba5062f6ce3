"""The SMTP sender over TLS, against aiosmtpd with a certificate made for the test: STARTTLS
when the server offers it (and requires it), TLS from the start with smtps://, a certificate
the machine does not trust refused, and no password sent in clear to a server without TLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.engine import Engine
from sqlmodel import select

from creditdash.core import db, outbox, settings
from creditdash.core.outbox import OutboxMail
from creditdash.notify import mail
from tests.conftest import free_port
from tests.notify import smtp


@dataclass
class TlsInbox(smtp.Inbox):
    """Also records whether each message came over an encrypted connection."""

    encrypted: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.encrypted.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, as a private mail server might have."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "creditdash test mail")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_path, key_path)


def _start(**options: Any) -> Iterator[tuple[Controller, TlsInbox]]:
    inbox = TlsInbox(free_port())
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port, **options)
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


def _use(monkeypatch: pytest.MonkeyPatch, url: str, *, trust: Path | None) -> None:
    monkeypatch.setenv("CREDITDASH_SMTP_URL", url)
    if trust is not None:
        # What an operator does for a private CA: the default trust store's file.
        monkeypatch.setenv("SSL_CERT_FILE", str(trust))
    else:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    settings.reset_settings()


def _queue() -> None:
    with db.session_scope() as session:
        outbox.enqueue_mail(session, to="a@example.com", subject="hi", text="t", kind="test")


def _row() -> OutboxMail:
    with db.session_scope(readonly=True) as session:
        [row] = session.exec(select(OutboxMail)).all()
        session.expunge(row)
        return row


def test_starttls_is_used_when_the_server_requires_it(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, certificate: Certificate
) -> None:
    for _controller, inbox in _start(
        tls_context=certificate.server_context(),
        require_starttls=True,
        authenticator=smtp._authenticate,
        auth_require_tls=True,
    ):
        url = f"smtp://{smtp.USER}:{smtp.PASSWORD}@127.0.0.1:{inbox.port}"
        _use(monkeypatch, url, trust=certificate.cert)
        _queue()
        assert mail.send_due_mail() == 1
        assert [m["To"] for m in inbox.messages] == ["a@example.com"]
        assert inbox.encrypted == [True]
    assert _row().status == "sent"


def test_smtps_is_tls_from_the_start(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, certificate: Certificate
) -> None:
    for _controller, inbox in _start(ssl_context=certificate.server_context()):
        _use(monkeypatch, f"smtps://127.0.0.1:{inbox.port}", trust=certificate.cert)
        _queue()
        assert mail.send_due_mail() == 1
        assert len(inbox.messages) == 1
    assert _row().status == "sent"


def test_an_untrusted_certificate_is_refused_and_the_mail_waits(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, certificate: Certificate
) -> None:
    for _controller, inbox in _start(
        tls_context=certificate.server_context(), require_starttls=True
    ):
        _use(monkeypatch, f"smtp://127.0.0.1:{inbox.port}", trust=None)
        _queue()
        assert mail.send_due_mail() == 0
        assert inbox.messages == []
    row = _row()
    assert row.status == "pending" and row.attempts == 1
    assert "CERTIFICATE_VERIFY_FAILED" in (row.last_error or "")


def test_no_password_in_clear_to_a_server_without_tls(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server is on loopback, so the sender is told it is elsewhere: "localhost.localdomain"
    # would also be loopback, so patch the check instead of the name.
    monkeypatch.setattr(mail, "_is_loopback", lambda host: False)
    for _controller, inbox in _start(authenticator=smtp._authenticate, auth_require_tls=False):
        _use(monkeypatch, f"smtp://{smtp.USER}:{smtp.PASSWORD}@127.0.0.1:{inbox.port}", trust=None)
        _queue()
        assert mail.send_due_mail() == 0
        assert inbox.messages == []
    row = _row()
    assert row.status == "pending"
    assert "does not offer STARTTLS" in (row.last_error or "")
