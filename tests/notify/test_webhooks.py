"""Outbound webhooks against a real HTTP receiver on loopback that verifies every signature."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from creditdash.accounts import api_keys
from creditdash.core import audit, db, outbox, settings
from creditdash.core.errors import Forbidden, NotFound, ValidationFailed
from creditdash.core.outbox import WEBHOOK_EVENT_TYPES, Event
from creditdash.core.timeutil import utcnow
from creditdash.notify import delivery, endpoints
from creditdash.notify.models import WebhookDelivery, WebhookEndpoint
from tests.factories import funded_customer, signed_up


class Receiver:
    """An HTTP server in a thread: answers `fail_first` requests with 500 (or a redirect),
    then 204; checks each request's signature with the endpoint's secret."""

    def __init__(self) -> None:
        self.secret = ""
        self.fail_first = 0
        self.redirect = False
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                receiver.requests.append(
                    {"path": self.path, "headers": headers, "body": body, "verified": verified}
                )
                if receiver.redirect:
                    self.send_response(302)
                    self.send_header("location", "/elsewhere")
                elif len(receiver.requests) <= receiver.fail_first:
                    self.send_response(500)
                else:
                    self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self) -> list[str]:
        return [r["headers"]["webhook-id"] for r in self.requests]

    def types(self) -> list[str]:
        return [json.loads(r["body"])["type"] for r in self.requests]


@pytest.fixture
def receiver(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    settings.reset_settings()
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


def add(receiver: Receiver, customer_id: str, types: list[str] | tuple[str, ...]) -> str:
    with db.session_scope() as session:
        endpoint, secret = endpoints.add_endpoint(
            session, customer_id=customer_id, url=receiver.url, event_types=list(types)
        )
    receiver.secret = secret
    return endpoint.id


def deliveries(endpoint_id: str | None = None) -> list[WebhookDelivery]:
    with db.session_scope(readonly=True) as session:
        query = select(WebhookDelivery)
        if endpoint_id:
            query = query.where(WebhookDelivery.endpoint_id == endpoint_id)  # type: ignore[arg-type]
        return list(session.execute(query).scalars())


def run_all(now: datetime | None = None) -> int:
    delivery.fan_out_once()
    return delivery.deliver_due_once(now=now)


def test_secret_format_and_stored_encrypted(receiver: Receiver) -> None:
    customer = funded_customer(receiver_engine(), credits_micros=0)
    endpoint_id = add(receiver, customer.customer_id, ["key.created"])
    assert receiver.secret.startswith("whsec_")
    assert len(__import__("base64").b64decode(receiver.secret[6:])) == 24
    with db.session_scope(readonly=True) as session:
        stored = session.get(WebhookEndpoint, endpoint_id)
        assert stored is not None and receiver.secret not in stored.secret
        logged = [e.after_json or "" for e in audit.list_entries(session)]
        assert all(receiver.secret not in text for text in logged)


def receiver_engine() -> Engine:
    return db.get_engine()


def test_retries_then_exactly_one_accepted_delivery_per_event(receiver: Receiver) -> None:
    customer = funded_customer(receiver_engine(), credits_micros=0)
    endpoint_id = add(receiver, customer.customer_id, ["key.created", "key.revoked"])
    receiver.fail_first = 2
    with db.session_scope() as session:
        key, _ = api_keys.create_api_key(session, customer_id=customer.customer_id, name="ci")
    assert delivery.fan_out_once() == 1
    assert delivery.fan_out_once() == 0  # the event is hooked once
    start = utcnow()
    assert delivery.deliver_due_once(now=start) == 1
    assert delivery.deliver_due_once(now=start) == 0  # the retry is not due yet
    assert delivery.deliver_due_once(now=start + timedelta(seconds=6)) == 1
    assert delivery.deliver_due_once(now=start + timedelta(minutes=6)) == 1
    assert delivery.deliver_due_once(now=start + timedelta(days=3)) == 0  # delivered: done
    assert len(receiver.requests) == 3 and all(r["verified"] for r in receiver.requests)
    assert len(set(receiver.ids())) == 1  # the same webhook-id on every retry
    [row] = deliveries(endpoint_id)
    assert row.id == receiver.ids()[0] and row.id.startswith("msg_")
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 3, 204)
    body = json.loads(receiver.requests[-1]["body"])
    assert body["type"] == "key.created"
    assert body["data"]["key_id"] == key.id
    assert body["data"]["customer_id"] == customer.customer_id
    datetime.fromisoformat(body["timestamp"])
    headers = receiver.requests[-1]["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("creditdash")
    with db.session_scope(readonly=True) as session:
        attempts = delivery.list_attempts(session, delivery_id=row.id)
        assert [a.status_code for a in attempts] == [500, 500, 204]
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None and endpoint.consecutive_failures == 0

    # The real flow on: revoking the key is delivered and verified too.
    with db.session_scope() as session:
        api_keys.revoke_api_key(session, customer_id=customer.customer_id, key_id=key.id)
    assert run_all() == 1
    assert receiver.types() == ["key.created"] * 3 + ["key.revoked"]
    assert receiver.requests[-1]["verified"]


def test_only_subscribed_types_and_never_another_workspace(receiver: Receiver) -> None:
    mine = funded_customer(receiver_engine(), credits_micros=0)
    theirs = funded_customer(receiver_engine(), credits_micros=0)
    chosen = ["balance.low", "invoice.issued", "key.revoked"]
    add(receiver, mine.customer_id, chosen)
    with db.session_scope() as session:
        for customer_id in (mine.customer_id, theirs.customer_id):
            for event_type in WEBHOOK_EVENT_TYPES:
                outbox.emit(session, type=event_type, customer_id=customer_id, data={"n": 1})
    assert run_all() == len(chosen)
    assert sorted(receiver.types()) == sorted(chosen)
    assert {json.loads(r["body"])["data"]["customer_id"] for r in receiver.requests} == {
        mine.customer_id
    }
    with db.session_scope(readonly=True) as session:
        unhooked = session.execute(select(Event).where(Event.hooked_at.is_(None)))  # type: ignore[union-attr]
        assert unhooked.first() is None


def test_a_tampered_body_fails_verification(receiver: Receiver) -> None:
    customer = funded_customer(receiver_engine(), credits_micros=0)
    add(receiver, customer.customer_id, ["key.created"])
    with db.session_scope() as session:
        api_keys.create_api_key(session, customer_id=customer.customer_id, name="ci")
    assert run_all() == 1
    [request] = receiver.requests
    Webhook(receiver.secret).verify(request["body"], request["headers"])
    tampered = request["body"].replace(b"key.created", b"key.revoked")
    with pytest.raises(WebhookVerificationError):
        Webhook(receiver.secret).verify(tampered, request["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoints.new_secret()).verify(request["body"], request["headers"])


def test_bad_endpoints_are_refused_and_nothing_is_saved(receiver: Receiver) -> None:
    customer = funded_customer(receiver_engine(), credits_micros=0)
    cases = [
        ("https://169.254.169.254/latest/meta-data", ["key.created"], "link-local"),
        ("http://169.254.169.254/", ["key.created"], "link-local"),
        ("ftp://example.com/x", ["key.created"], "https"),
        ("https://user:pw@example.com/x", ["key.created"], "credentials"),
        (receiver.url, ["key.created", "key.exploded"], "'key.exploded'"),
        (receiver.url, [], "at least one"),
    ]
    for url, types, expected in cases:
        with pytest.raises(ValidationFailed, match=expected), db.session_scope() as session:
            endpoints.add_endpoint(
                session, customer_id=customer.customer_id, url=url, event_types=types
            )
    assert deliveries() == []
    with db.session_scope(readonly=True) as session:
        assert endpoints.list_endpoints(session, customer_id=customer.customer_id) == []


def test_plain_http_and_loopback_need_the_private_switch(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = funded_customer(receiver_engine(), credits_micros=0)
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "0")
    settings.reset_settings()
    for url in (receiver.url, "https://127.0.0.1/hooks"):
        with pytest.raises(ValidationFailed), db.session_scope() as session:
            endpoints.add_endpoint(
                session, customer_id=customer.customer_id, url=url, event_types=["key.created"]
            )


def test_a_redirect_is_not_followed_and_counts_as_a_failure(receiver: Receiver) -> None:
    customer = funded_customer(receiver_engine(), credits_micros=0)
    endpoint_id = add(receiver, customer.customer_id, ["key.created"])
    receiver.redirect = True
    with db.session_scope() as session:
        api_keys.create_api_key(session, customer_id=customer.customer_id, name="ci")
    assert run_all() == 1
    assert [r["path"] for r in receiver.requests] == ["/hooks"]
    [row] = deliveries(endpoint_id)
    assert (row.status, row.last_status_code) == ("pending", 302)
    assert "redirect" in row.last_error


def test_an_endpoint_failing_for_24_hours_is_disabled_and_the_owners_are_told(
    receiver: Receiver,
) -> None:
    customer = funded_customer(receiver_engine(), credits_micros=0)
    endpoint_id = add(receiver, customer.customer_id, ["key.created"])
    receiver.fail_first = 1000
    with db.session_scope() as session:
        api_keys.create_api_key(session, customer_id=customer.customer_id, name="ci")
    delivery.fan_out_once()
    # Each attempt at the moment it falls due: the whole schedule, then given up.
    for _ in range(20):
        [row] = deliveries(endpoint_id)
        if row.status != "pending":
            break
        assert delivery.deliver_due_once(now=row.next_attempt_at) == 1
    [row] = deliveries(endpoint_id)
    assert row.last_attempt_at - row.created_at >= delivery.LAST_ATTEMPT_AFTER
    assert row.status == "failed"
    assert row.attempts == len(delivery.RETRY_DELAYS) + 2 == len(receiver.requests)
    with db.session_scope(readonly=True) as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None and not endpoint.enabled
        assert "24 hours" in endpoint.disabled_reason
        [event] = session.execute(
            select(Event).where(Event.type == delivery.DISABLED_EVENT)  # type: ignore[arg-type]
        ).scalars()
        assert event.customer_id == customer.customer_id
        assert event.data() == {
            "endpoint_id": endpoint_id,
            "url": receiver.url,
            "reason": endpoint.disabled_reason,
        }
    # A disabled endpoint gets no new deliveries; enabling it starts over.
    with db.session_scope() as session:
        api_keys.create_api_key(session, customer_id=customer.customer_id, name="ci2")
    assert run_all() == 0
    with db.session_scope() as session:
        enabled = endpoints.update_endpoint(
            session, endpoint_id=endpoint_id, customer_id=customer.customer_id, enabled=True
        )
        assert enabled.enabled and enabled.consecutive_failures == 0


def test_resend_keeps_the_webhook_id(receiver: Receiver) -> None:
    customer = funded_customer(receiver_engine(), credits_micros=0)
    endpoint_id = add(receiver, customer.customer_id, ["key.created"])
    with db.session_scope() as session:
        api_keys.create_api_key(session, customer_id=customer.customer_id, name="ci")
    assert run_all() == 1
    [row] = deliveries(endpoint_id)
    with db.session_scope() as session:
        resent = delivery.resend(session, delivery_id=row.id, customer_id=customer.customer_id)
        assert resent.status == "pending"
    assert delivery.deliver_due_once() == 1
    assert receiver.ids() == [row.id, row.id]
    assert all(r["verified"] for r in receiver.requests)
    other = funded_customer(receiver_engine(), credits_micros=0)
    with pytest.raises(NotFound), db.session_scope() as session:
        delivery.resend(session, delivery_id=row.id, customer_id=other.customer_id)


def test_send_test_event_goes_to_that_endpoint_only(receiver: Receiver) -> None:
    customer = funded_customer(receiver_engine(), credits_micros=0)
    first = add(receiver, customer.customer_id, ["key.created"])
    add(receiver, customer.customer_id, ["key.created"])  # the receiver now checks its secret
    with db.session_scope() as session:
        test = delivery.send_test_event(
            session, endpoint_id=first, customer_id=customer.customer_id
        )
    assert test.endpoint_id == first
    assert run_all() == 1
    assert receiver.types() == [delivery.TEST_EVENT]


def test_rotate_secret_signs_with_the_new_one(receiver: Receiver) -> None:
    customer = funded_customer(receiver_engine(), credits_micros=0)
    endpoint_id = add(receiver, customer.customer_id, ["key.created"])
    old = receiver.secret
    with db.session_scope() as session:
        receiver.secret = endpoints.rotate_secret(
            session, endpoint_id=endpoint_id, customer_id=customer.customer_id
        )
        api_keys.create_api_key(session, customer_id=customer.customer_id, name="ci")
    assert receiver.secret != old
    assert run_all() == 1 and receiver.requests[0]["verified"]


def test_members_need_webhooks_manage(receiver: Receiver) -> None:
    owner_id, customer_id = signed_up("owner@hooks.example.com")
    stranger_id, _ = signed_up("stranger@other.example.com")
    with db.session_scope() as session:
        endpoint, _secret = endpoints.add_endpoint(
            session,
            customer_id=customer_id,
            url=receiver.url,
            event_types=["key.created"],
            user_id=owner_id,
        )
    for action in (
        lambda s: endpoints.add_endpoint(
            s,
            customer_id=customer_id,
            url=receiver.url,
            event_types=["key.created"],
            user_id=stranger_id,
        ),
        lambda s: endpoints.rotate_secret(
            s, endpoint_id=endpoint.id, customer_id=customer_id, user_id=stranger_id
        ),
        lambda s: endpoints.delete_endpoint(
            s, endpoint_id=endpoint.id, customer_id=customer_id, user_id=stranger_id
        ),
    ):
        with pytest.raises(Forbidden), db.session_scope() as session:
            action(session)
    with db.session_scope() as session:
        endpoints.delete_endpoint(
            session, endpoint_id=endpoint.id, customer_id=customer_id, user_id=owner_id
        )
        assert endpoints.list_endpoints(session, customer_id=customer_id) == []


def test_two_processes_never_send_the_same_attempt(receiver: Receiver) -> None:
    customer = funded_customer(receiver_engine(), credits_micros=0)
    add(receiver, customer.customer_id, ["key.created"])
    with db.session_scope() as session:
        for n in range(4):
            api_keys.create_api_key(session, customer_id=customer.customer_id, name=f"k{n}")
    threads = [threading.Thread(target=delivery.fan_out_once) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(deliveries()) == 4
    threads = [threading.Thread(target=delivery.deliver_due_once) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(receiver.requests) == 4 and len(set(receiver.ids())) == 4


def test_a_delivery_goes_to_the_address_that_was_checked(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The endpoint's name resolves to the receiver when it is checked, and to another address
    # for any later lookup (DNS rebinding): the POST still reaches the checked address, with
    # the endpoint's name as its Host.
    import socket

    from creditdash.catalog import urlguard

    port = receiver.server.server_address[1]
    real = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "hooks.example.test":
            return real(host, *args, **kwargs)
        address = "127.0.0.1" if not answers else "192.0.2.1"
        answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    urlguard._resolved.clear()
    customer = funded_customer(receiver_engine(), credits_micros=0)
    with db.session_scope() as session:
        _endpoint, secret = endpoints.add_endpoint(
            session,
            customer_id=customer.customer_id,
            url=f"http://hooks.example.test:{port}/hooks?tenant=7",
            event_types=["key.created"],
        )
    receiver.secret = secret
    with db.session_scope() as session:
        api_keys.create_api_key(session, customer_id=customer.customer_id, name="ci")
    assert run_all() == 1
    [request] = receiver.requests
    assert request["verified"] and request["path"] == "/hooks?tenant=7"
    assert request["headers"]["host"] == f"hooks.example.test:{port}"
    # Only the cached, checked answer was used: no second lookup reached the resolver.
    assert answers == ["127.0.0.1"]

    # Once the cache renews to an address the guard refuses, nothing is sent.
    urlguard._resolved.clear()
    monkeypatch.delenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS")
    settings.reset_settings()
    with pytest.raises(ValidationFailed, match="private"):
        endpoints.pin_url("https://hooks.example.test/hooks")
