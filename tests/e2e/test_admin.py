"""The admin workspace in Chromium: approve a bank transfer once, change a price that the next
request pays while earlier records keep theirs, and a customer kept out."""

from __future__ import annotations

import re
import time
from decimal import ROUND_HALF_UP, Decimal

import httpx
import openai
import pytest

from creditdash.demo import (
    DEMO_ADMIN_EMAIL,
    DEMO_ADMIN_PASSWORD,
    DEMO_CUSTOMER_EMAIL,
    DEMO_CUSTOMER_PASSWORD,
)
from tests.e2e.harness import DEMO_KEY, shot, sign_in

pytestmark = pytest.mark.e2e


def _credits(app_url: str) -> Decimal:
    answer = httpx.get(
        app_url + "/v1/credits", headers={"Authorization": f"Bearer {DEMO_KEY['key']}"}
    )
    return Decimal(answer.json()["available"])


def _generation(app_url: str, request_id: str) -> dict[str, object]:
    return httpx.get(
        app_url + "/v1/generation",
        params={"id": request_id},
        headers={"Authorization": f"Bearer {DEMO_KEY['key']}"},
    ).json()


def _chat(app_url: str) -> str:
    client = openai.OpenAI(api_key=DEMO_KEY["key"], base_url=app_url + "/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], max_tokens=16
    )
    return raw.headers["x-request-id"]


def test_admin_approves_a_bank_transfer_once(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, DEMO_CUSTOMER_EMAIL, DEMO_CUSTOMER_PASSWORD)
    page.wait_for_url(re.compile(r".*/home/?$"))
    page.goto("/billing?package=Custom")
    page.wait_for_selector("#quote-total")
    page.click("#accept-terms")
    page.click("#manual-order")
    page.wait_for_selector("text=with the reference CD-")
    reference = re.search(r"CD-[A-Z0-9]{5}-[A-Z0-9]{5}", page.content()).group(0)
    before = _credits(app_url)
    # The customer cannot reach the admin pages; the handlers refuse them on the server too
    # (tests/state/admin/test_admin_guard.py calls them directly).
    page.goto("/admin/orders")
    page.wait_for_url(re.compile(r".*/home/?$"))

    page.context.clear_cookies()
    sign_in(page, DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD)
    page.wait_for_url(re.compile(r".*/admin/?$"))
    page.goto("/admin/orders")
    page.wait_for_selector(f"text={reference}")
    row = page.locator("tr", has_text=reference)
    row.locator("input[name=reference]").fill("SEPA-E2E-1")
    row.locator("button:has-text('Approve')").click()
    page.wait_for_selector("text=approved and credited")
    shot(page, "admin-orders")
    assert _credits(app_url) - before == Decimal("1000")
    assert page.locator(f"text={reference}").count() == 0  # it left the queue
    assert _credits(app_url) - before == Decimal("1000")


def test_admin_price_change_applies_to_the_next_request(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    earlier = _chat(app_url)
    earlier_cost = Decimal(str(_generation(app_url, earlier)["cost"]))
    sign_in(page, DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD)
    page.wait_for_url(re.compile(r".*/admin/?$"))
    page.goto("/admin/models")
    page.wait_for_selector("text=Margin review")
    row = page.locator("tr", has_text="gpt-4o-mini").first
    row.locator("input[name=input]").fill("6.000000")
    row.locator("input[name=output]").fill("24.000000")
    row.locator("button:has-text('Save')").click()
    page.wait_for_selector("text=Price of gpt-4o-mini saved")
    shot(page, "admin-models")
    time.sleep(6)  # the gateway's catalog snapshot lives 5 s
    later = _chat(app_url)
    later_record = _generation(app_url, later)
    prompt, completion = int(later_record["prompt_tokens"]), int(later_record["completion_tokens"])  # type: ignore[call-overload]
    expected = (Decimal(prompt) * 6 + Decimal(completion) * 24) / 1_000_000
    # Rounded once per request, half-up to the micro (billing/pricing.py).
    rounded = expected.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
    assert Decimal(str(later_record["cost"])) == rounded
    assert Decimal(str(_generation(app_url, earlier)["cost"])) == earlier_cost


def test_admin_reads_the_mail_outbox(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    # The harness's app sends through its SMTP capture: the page says so, and a mail the
    # customer asked for (a password reset link) is listed with its kind once queued.
    page.goto("/forgot-password")
    page.wait_for_selector("#email")
    page.fill("#email", DEMO_CUSTOMER_EMAIL)
    page.click("button[type=submit]")
    page.wait_for_selector("text=we sent a link")
    sign_in(page, DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD)
    page.wait_for_url(re.compile(r".*/admin/?$"))
    page.goto("/admin/mail")
    page.wait_for_selector("text=Mail outbox")
    page.wait_for_selector("text=Mail is sent through the SMTP server")
    page.wait_for_selector("text=password_reset", timeout=30_000)
    shot(page, "admin-mail")
