"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, collecting what it is sent."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import free_port

USER, PASSWORD = "mailer", "s3cret"


@dataclass
class Inbox:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
    ok = isinstance(auth, LoginPassword) and (auth.login, auth.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok)


def start(*, with_auth: bool = False, port: int | None = None) -> tuple[Controller, Inbox]:
    inbox = Inbox(port or free_port())
    options: dict[str, Any] = {}
    if with_auth:
        # Plain-text AUTH on loopback only: the test checks our client logs in.
        options = {"authenticator": _authenticate, "auth_require_tls": False}
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port, **options)
    controller.start()
    return controller, inbox


@pytest.fixture
def smtp_inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    from creditdash.core import settings

    controller, inbox = start()
    monkeypatch.setenv("CREDITDASH_SMTP_URL", f"smtp://127.0.0.1:{inbox.port}")
    monkeypatch.setenv("CREDITDASH_MAIL_FROM", "creditdash <billing@example.com>")
    settings.reset_settings()
    yield inbox
    controller.stop()
    settings.reset_settings()
