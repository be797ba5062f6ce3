"""Payments and invoicing under test: a served app (webhooks, sandbox page, downloads) and a
fake Stripe on loopback. The fixtures are registered for tests/billing by its conftest."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from starlette.applications import Starlette

from creditdash.accounts import users
from creditdash.billing import ledger
from creditdash.billing.balances import customer_balance
from creditdash.billing.invoicing import profiles
from creditdash.billing.payments import checkout, orders, packages
from creditdash.billing.payments.models import PaymentEvent, PaymentOrder
from creditdash.billing.payments.verify import verify_payments
from creditdash.core import db, settings
from creditdash.core.audit import CLI, Actor
from creditdash.server import create_app
from tests.billing.payments.fake_stripe import API_KEY, FakeStripe
from tests.conftest import free_port
from tests.factories import funded_customer
from tests.proxy.fake_upstream import ServerThread

SANDBOX_SECRET = "whsec_sandbox_test_secret_0123456789"
STRIPE_SECRET = "whsec_stripe_test_secret_0123456789"
OLD_STRIPE_SECRET = "whsec_stripe_old_secret_9876543210"


@pytest.fixture(scope="session")
def fake_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe(port=free_port())
    server = ServerThread(fake.app(), fake.port)
    server.start()
    yield fake
    server.stop()


@pytest.fixture(scope="session")
def payments_server() -> Iterator[tuple[Starlette, str]]:
    # settings=None: the app reads the (per-test) environment on every request.
    app = create_app(standalone=False)
    server = ServerThread(app, free_port())
    server.start()
    yield app, f"http://127.0.0.1:{server.port}"
    server.stop()


@dataclass
class Shop:
    engine: Engine
    base_url: str
    customer_id: str
    account_id: int
    maker: Actor
    checker: Actor
    stripe: FakeStripe

    def order(self, package: str = "Growth", quantity: int = 1, **kw: Any) -> PaymentOrder:
        with db.session_scope() as session:
            found = packages.find_package(session, package)
            order = orders.create_order(
                session,
                customer_id=kw.pop("customer_id", self.customer_id),
                package=found,
                quantity=quantity,
                actor=kw.pop("actor", CLI),
                **kw,
            )
            session.expunge(order)
        if order.method == "checkout":
            order = checkout.open_checkout(order.id)
        return order

    def get(self, order_id: str) -> PaymentOrder:
        with db.session_scope(readonly=True) as session:
            order = orders.get_order(session, order_id)
            session.expunge(order)
            return order

    def available(self, customer_id: str | None = None) -> int:
        with db.session_scope(readonly=True) as session:
            return customer_balance(session, customer_id or self.customer_id).available_micros

    def events(self) -> list[PaymentEvent]:
        with db.session_scope(readonly=True) as session:
            found = list(session.execute(select(PaymentEvent).order_by(PaymentEvent.id)).scalars())
            for event in found:
                session.expunge(event)
            return found

    def event_count(self) -> int:
        with db.session_scope(readonly=True) as session:
            return int(session.execute(select(func.count(PaymentEvent.id))).scalar_one())

    def verify_ledger(self) -> None:
        with db.session_scope(readonly=True, snapshot=True) as session:
            assert ledger.verify(session) == []
            assert verify_payments(session) == []

    def post_event(
        self,
        event: dict[str, Any] | str,
        *,
        provider: str = "sandbox",
        secret: str | None = None,
        header: str | None = None,
        timestamp: int | None = None,
    ) -> httpx.Response:
        body = event if isinstance(event, str) else json.dumps(event)
        if header is None:
            secret = secret or (SANDBOX_SECRET if provider == "sandbox" else STRIPE_SECRET)
            header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp)
        headers = {"content-type": "application/json"}
        if header:
            headers["stripe-signature"] = header
        return httpx.post(
            f"{self.base_url}/webhooks/{provider}", content=body.encode(), headers=headers
        )


def session_event(
    order: PaymentOrder,
    event_type: str = "checkout.session.completed",
    *,
    event_id: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
    payment_status: str = "paid",
    payment_intent: str = "pi_test_1",
) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{event_type}_{order.id}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {
            "object": {
                "id": order.checkout_session_id,
                "object": "checkout.session",
                "client_reference_id": order.id,
                "amount_total": order.gross_minor if amount is None else amount,
                "currency": (currency or order.currency).lower(),
                "payment_status": payment_status,
                "payment_intent": payment_intent,
                "metadata": {"order_id": order.id},
            }
        },
    }


def charge_refunded_event(
    *, event_id: str, payment_intent: str, amount_refunded: int, currency: str = "eur"
) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": "charge.refunded",
        "data": {
            "object": {
                "id": "ch_test_1",
                "object": "charge",
                "payment_intent": payment_intent,
                "amount_refunded": amount_refunded,
                "currency": currency,
            }
        },
    }


def _admin(session: Any, email: str) -> Actor:
    user = users.create_user(session, email=email, password=None, is_platform_admin=True)
    assert user.id is not None
    return Actor.user(user.id, user.email)


def _shop(
    engine: Engine,
    server: tuple[Starlette, str],
    fake: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
    *,
    use_stripe: bool,
) -> Shop:
    monkeypatch.setenv("CREDITDASH_SANDBOX_WEBHOOK_SECRET", SANDBOX_SECRET)
    monkeypatch.setenv("CREDITDASH_PUBLIC_URL", server[1])
    if use_stripe:
        monkeypatch.setenv("STRIPE_SECRET_KEY", API_KEY)
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"{STRIPE_SECRET}")
        monkeypatch.setenv("CREDITDASH_STRIPE_API_BASE", fake.base_url)
    else:
        monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
        monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    settings.reset_settings()
    fake.reset()
    who = funded_customer(engine, credits_micros=0, name="Buyer")
    with db.session_scope() as session:
        packages.seed_demo_packages(session, actor=CLI)
        profiles.seed_demo_seller(session, actor=CLI)
        # A buyer outside the seller's tax registrations: no tax, so gross == net in these
        # tests; tests/billing/invoicing covers the tax rules.
        profiles.save_billing_profile(
            session,
            customer_id=who.customer_id,
            data=profiles.ProfileInput(legal_name="Buyer Inc.", country="US", is_business=True),
            actor=CLI,
        )
        maker = _admin(session, f"maker-{who.customer_id}@example.com")
        checker = _admin(session, f"checker-{who.customer_id}@example.com")
    return Shop(engine, server[1], who.customer_id, who.account_id, maker, checker, fake)


@pytest.fixture
def shop(
    engine: Engine,
    payments_server: tuple[Starlette, str],
    fake_stripe: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> Shop:
    """Sandbox payments (no Stripe key), on SQLite and on PostgreSQL."""
    return _shop(engine, payments_server, fake_stripe, monkeypatch, use_stripe=False)


@pytest.fixture
def stripe_shop(
    engine: Engine,
    payments_server: tuple[Starlette, str],
    fake_stripe: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> Shop:
    """Stripe payments against the fake Stripe API, on SQLite and on PostgreSQL."""
    return _shop(engine, payments_server, fake_stripe, monkeypatch, use_stripe=True)
