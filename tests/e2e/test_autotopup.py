"""Automatic top-ups in Chromium: save a card on the sandbox's hosted page (with consent),
turn the rule on, spend through the gateway below the threshold, and watch the overview's
balance refill without a reload."""

from __future__ import annotations

import re
import time
from decimal import Decimal

import openai
import pytest

from tests.e2e.harness import shot

pytestmark = pytest.mark.e2e


def _available(page: object) -> Decimal:
    text = page.locator("#available").inner_text()  # type: ignore[attr-defined]
    # The first figure: the card adds a money hint under it ("≈ €10.00").
    return Decimal(re.findall(r"-?\d+\.\d+", text.replace(",", ""))[0])


def _wait_for(condition: object, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.25)
    raise AssertionError("condition not met in time")


def test_save_a_card_turn_on_the_rule_and_watch_it_refill(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    email = f"topup{int(time.time() * 1000)}@example.com"
    page.goto("/signup")
    page.wait_for_selector("#su-email")
    page.fill("#su-name", "Tia Topup")
    page.fill("#su-workspace", "Topup Labs")
    page.fill("#su-email", email)
    page.fill("#su-password", "topup-pass-1234")
    page.fill("#su-confirm", "topup-pass-1234")
    page.click("#sign-up")
    page.wait_for_url(re.compile(r".*/home/?$"))
    page.wait_for_selector("#available")
    assert _available(page) == 0

    page.goto("/keys")
    page.fill("#key-name", "agents")
    page.click("#create-key")
    page.wait_for_selector("#new-key")
    raw_key = re.search(r"sk-cd-[\w-]+", page.locator("#new-key").inner_text()).group(0)
    page.click("#key-done")

    # Save a card: consent first, then the sandbox's hosted page with its test cards.
    page.goto("/billing")
    page.click("#autotopup-link")
    page.wait_for_url("**/billing/autotopup")
    page.wait_for_selector("text=No card is saved.")
    page.click("#save-card")
    page.wait_for_selector("text=Tick the box to give your consent")
    page.click("#accept-consent")
    page.click("#save-card")
    page.wait_for_url("**/sandbox/setup/**")
    assert "TEST MODE" in page.content()
    assert "charge it without asking me each time" in page.content()
    page.select_option("#card-number", "4242424242424242")
    page.check("input[name=consent]")
    page.click("text=Save card")
    page.wait_for_url(re.compile(r".*/billing/autotopup/?\?setup=done.*"))
    page.wait_for_selector("#saved-card")
    assert "visa ending 4242" in page.locator("#saved-card").inner_text()
    assert "Topup Labs" in page.locator("#consent-text").inner_text()

    # The rule: below 9.99999 credits buy Starter (10 credits), no cool-down. The balance is
    # 0, so the first top-up follows at once; one gateway request later crosses the line again.
    page.fill("#below", "9.99999")
    page.fill("#cooldown", "0")
    page.click("#save-rule")
    page.wait_for_selector("text=Automatic top-ups are on.")
    page.wait_for_selector("#rule-status >> text=active")
    shot(page, "autotopup-rule")

    page.goto("/home")
    page.wait_for_selector("#available")
    _wait_for(lambda: _available(page) == Decimal("10.000000"))
    client = openai.OpenAI(api_key=raw_key, base_url=app_url + "/v1", max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], max_tokens=16
    )
    assert reply.choices[0].message.content
    # Spent below 10 and refilled by a second Starter, seen without reloading the page.
    # The card shows two decimals (20.00 for 19.99992): the exact figure is the API's.
    _wait_for(lambda: _available(page) > Decimal("19"))
    spent = page.locator("#spent-today").inner_text()
    assert Decimal(re.findall(r"\d+\.\d+", spent)[0]) > 0
    shot(page, "autotopup-refilled")

    page.goto("/billing/autotopup")
    page.wait_for_selector(".autotopup-attempt")
    _wait_for(lambda: page.locator(".autotopup-attempt").count() == 2)
    rows = page.locator(".autotopup-attempt").all_inner_texts()
    assert all("succeeded" in row for row in rows)
