"""The customer journey in Chromium: sign up, create a key, top up through the sandbox
checkout, call the gateway with the openai SDK, watch balance and chart change without a
reload, download the invoice PDF; then every portal page at desktop and phone width."""

from __future__ import annotations

import re
import time
from decimal import Decimal

import openai
import pytest

from tests.e2e.harness import shot

pytestmark = pytest.mark.e2e


def _number(page: object, selector: str) -> Decimal:
    text = page.locator(selector).inner_text()  # type: ignore[attr-defined]
    # The first figure: a card may add a money hint under it ("≈ €10.00").
    return Decimal(re.findall(r"-?\d+\.\d+", text.replace(",", ""))[0])


def _wait_for(condition: object, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.25)
    raise AssertionError("condition not met in time")


def test_sign_up_top_up_call_and_download(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    email = f"journey{int(time.time() * 1000)}@example.com"
    page.goto("/pricing")
    page.wait_for_selector("text=Starter")
    page.click("text=Get started >> nth=0")
    page.wait_for_selector("#su-email")
    page.fill("#su-name", "Jo Journey")
    page.fill("#su-workspace", "Journey GmbH")
    page.fill("#su-email", email)
    page.fill("#su-password", "journey-pass-1234")
    page.fill("#su-confirm", "journey-pass-1234")
    page.click("#sign-up")
    # The package chosen on the pricing page is carried on to its checkout.
    page.wait_for_url(re.compile(r".*/billing/?\?package=Starter$"))
    page.wait_for_selector("#quote-total")
    page.goto("/home")
    page.wait_for_selector("#no-usage")
    assert _number(page, "#available") == 0

    # A key, shown once.
    page.goto("/keys")
    page.fill("#key-name", "journey")
    page.click("#create-key")
    page.wait_for_selector("#new-key")
    raw_key = re.search(r"sk-cd-[\w-]+", page.locator("#new-key").inner_text()).group(0)
    shot(page, "keys-new")
    page.click("#key-done")
    page.wait_for_selector("text=never")

    # Top up: the final amount with tax, the sandbox's hosted page, back to "pending", credited.
    page.goto("/billing?package=Starter")
    page.wait_for_selector("#quote-total")
    assert page.locator("#quote-total").inner_text() == "11.90 EUR"  # 10.00 + 19% VAT
    page.click("#pay")
    page.wait_for_selector("text=Accept the terms")
    page.click("#accept-terms")
    page.click("#pay")
    page.wait_for_url("**/sandbox/checkout/**")
    assert "TEST MODE" in page.content()
    page.check("input[name=accept_terms]")
    page.click("text=Pay 11.90 EUR")
    page.wait_for_url(re.compile(r".*/billing/?\?checkout=success.*"))
    page.wait_for_selector("text=Payment received")
    page.wait_for_selector(".invoice-pdf")
    shot(page, "billing-paid")

    # Call the gateway with the new key; the overview follows without a reload.
    page.goto("/home")
    page.wait_for_selector("#available")
    _wait_for(lambda: _number(page, "#available") == Decimal("10.000000"))
    client = openai.OpenAI(api_key=raw_key, base_url=app_url + "/v1", max_retries=0)
    for _ in range(3):
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], max_tokens=16
        )
        assert reply.choices[0].message.content
    # Three calls cost far less than 0.01: the balance still reads 10.00 (two decimals), so
    # watch today's spend, which shows small amounts with enough digits to see them.
    _wait_for(lambda: _number(page, "#spent-today") > 0)
    page.wait_for_selector("#spend-chart .js-plotly-plot", timeout=20_000)
    shot(page, "overview-live")

    # The request log shows the calls; the invoice downloads as a PDF.
    page.goto("/usage")
    page.wait_for_selector("text=1-3 of 3")
    shot(page, "usage-log")
    page.locator("code:has-text('req_')").first.click()
    page.wait_for_selector("[role=dialog] >> text=sandbox-chat")
    detail = page.locator("[role=dialog]", has_text="sandbox-chat").inner_text()
    assert "gpt-4o-mini" in detail and "undefined" not in detail
    shot(page, "usage-detail")
    page.keyboard.press("Escape")
    page.goto("/billing")
    with page.expect_download() as download:
        page.click(".invoice-pdf")
    pdf = download.value.path()
    from pypdf import PdfReader

    text = "".join(p.extract_text() for p in PdfReader(str(pdf)).pages)
    assert "INVOICE" in text and "Journey GmbH" in text and "11.90 EUR" in text


def test_every_portal_page_renders(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    from creditdash.demo import DEMO_CUSTOMER_EMAIL, DEMO_CUSTOMER_PASSWORD
    from tests.e2e.harness import sign_in

    page.goto("/pricing")
    page.wait_for_selector("text=Commercial terms")
    shot(page, "pricing")
    page.goto("/signup")
    page.wait_for_selector("#su-email")
    shot(page, "signup")
    phone = page.context.browser.new_context(
        viewport={"width": 390, "height": 844}, base_url=app_url
    ).new_page()
    for viewer, suffix in ((page, ""), (phone, "-phone")):
        sign_in(viewer, DEMO_CUSTOMER_EMAIL, DEMO_CUSTOMER_PASSWORD)
        viewer.wait_for_url(re.compile(r".*/home/?$"))
        viewer.wait_for_selector("#available")
        shot(viewer, "overview" + suffix)
        for path, ready in (
            ("/keys", "text=Create a key"),
            ("/usage", "text=Export CSV"),
            ("/billing", "#quote-total"),
            ("/team", "text=Invite a teammate"),
            ("/webhooks", "text=Add an endpoint"),
            ("/account", "text=Change password"),
        ):
            viewer.goto(path)
            viewer.wait_for_selector(ready)
            shot(viewer, path.strip("/") + suffix)
