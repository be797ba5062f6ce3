"""The sandbox provider end to end over HTTP: hosted test page, Pay, signed webhook, credit."""

from __future__ import annotations

import re

import httpx

from tests.billing.shop import Shop


def test_sandbox_checkout_pays_through_a_signed_webhook(shop: Shop) -> None:
    order = shop.order("Starter", quantity=3)
    assert order.provider == "sandbox"
    assert order.checkout_url and order.checkout_url.startswith(shop.base_url + "/sandbox/")
    page = httpx.get(order.checkout_url)
    assert page.status_code == 200
    assert "TEST MODE" in page.text
    assert "30.00 EUR" in page.text and "Refunds within 14 days" in page.text
    action = re.search(r'action="([^"]+)"', page.text)
    assert action is not None
    pay_url = shop.base_url + action.group(1)

    # The success redirect alone never credits: only the webhook the Pay button sends does.
    refused = httpx.post(pay_url, data={})
    assert refused.status_code == 400 and "Accept the terms" in refused.text
    assert shop.available() == 0 and shop.event_count() == 0

    paid = httpx.post(pay_url, data={"accept_terms": "yes"})
    assert paid.status_code == 303
    assert paid.headers["location"].endswith(f"/billing?checkout=success&order={order.id}")
    assert shop.available() == 30_000_000
    settled = shop.get(order.id)
    assert settled.status == "paid" and settled.terms_accepted_at is not None
    [event] = shop.events()
    assert event.provider == "sandbox" and event.outcome == "credited"

    again = httpx.post(pay_url, data={"accept_terms": "yes"})
    assert again.status_code == 409 and "paid" in again.text
    assert shop.available() == 30_000_000
    assert "This order is <b>paid</b>" in httpx.get(order.checkout_url).text
    shop.verify_ledger()


def test_unknown_sandbox_session_is_404(shop: Shop) -> None:
    assert httpx.get(shop.base_url + "/sandbox/checkout/cs_sandbox_nope").status_code == 404
    missing = httpx.post(shop.base_url + "/sandbox/checkout/cs_sandbox_nope/pay", data={})
    assert missing.status_code == 404


def test_sandbox_page_escapes_what_it_shows(shop: Shop) -> None:
    from creditdash.billing.payments.packages import PackageSpec, save_package
    from creditdash.core import db
    from creditdash.core.audit import CLI

    with db.session_scope() as session:
        spec = PackageSpec(
            name="<img src=x onerror=alert(1)>",
            currency="EUR",
            unit_price_minor=500,
            credits_micros=5_000_000,
        )
        save_package(session, spec=spec, actor=CLI)
    order = shop.order("<img src=x onerror=alert(1)>")
    page = httpx.get(order.checkout_url or "").text
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
