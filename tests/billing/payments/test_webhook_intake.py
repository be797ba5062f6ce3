"""What reaches the webhook handler at all: signature headers parsed strictly, non-ASCII
signatures and oversized bodies refused before anything is read or written."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import stripe

from creditdash.billing.payments import webhooks
from tests.billing.shop import (
    SANDBOX_SECRET,
    Shop,
    session_event,
)


@pytest.mark.parametrize(
    "shape",
    [" t={now},t={old},v1={sig}", "t={old},t={now},v1={sig}", "t={now}, v1={sig}", "v1={sig}"],
    ids=["leading-space", "two-timestamps", "space-after-comma", "no-timestamp"],
)
def test_loose_signature_headers_are_refused(shop: Shop, shape: str) -> None:
    order = shop.order()
    body = json.dumps(session_event(order))
    old = int(time.time()) - 3600
    sig = stripe.WebhookSignature.generate_signature_header(body, SANDBOX_SECRET, old).split("v1=")[
        1
    ]
    header = shape.format(now=int(time.time()), old=old, sig=sig)
    with pytest.raises(webhooks.SignatureRejected):
        webhooks.verify_event(body.encode(), header, [SANDBOX_SECRET])
    if header == header.strip():  # what an HTTP client can send at all
        assert shop.post_event(body, header=header).status_code == 400
    assert shop.event_count() == 0 and shop.available() == 0


def test_non_ascii_signature_is_a_400(shop: Shop) -> None:
    order = shop.order()
    header = f"t={int(time.time())},v1=abcé".encode()
    answer = httpx.post(
        f"{shop.base_url}/webhooks/sandbox",
        content=json.dumps(session_event(order)).encode(),
        headers={"stripe-signature": header},
    )
    assert answer.status_code == 400 and shop.event_count() == 0


def test_oversized_event_body_is_refused_unread(shop: Shop) -> None:
    answer = httpx.post(
        f"{shop.base_url}/webhooks/sandbox",
        content=b"{" + b" " * (600 * 1024) + b"}",
        headers={"stripe-signature": "t=1,v1=00"},
    )
    assert answer.status_code == 413 and shop.event_count() == 0
