"""The real app in prod mode on one port, driven by Debian's Chromium through Playwright:
sign-in and sign-out for the demo admin and the demo customer."""

from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import urlparse

import httpx
import pytest

from creditdash.demo import (
    DEMO_ADMIN_EMAIL,
    DEMO_ADMIN_PASSWORD,
    DEMO_CUSTOMER_EMAIL,
    DEMO_CUSTOMER_PASSWORD,
)
from tests.e2e.harness import DEMO_KEY
from tests.e2e.harness import shot as _shot
from tests.e2e.harness import sign_in as _sign_in

pytestmark = pytest.mark.e2e


def test_gateway_and_dashboard_share_one_port(app_url: str) -> None:
    assert httpx.get(app_url + "/healthz").json() == {"status": "ok"}
    assert "creditdash" in httpx.get(app_url + "/").text.lower()


def test_openai_sdk_calls_the_gateway_on_the_app_port(app_url: str) -> None:
    import openai

    headers = {"Authorization": f"Bearer {DEMO_KEY['key']}"}
    before = Decimal(httpx.get(app_url + "/v1/credits", headers=headers).json()["balance"])
    client = openai.OpenAI(api_key=DEMO_KEY["key"], base_url=app_url + "/v1", max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}], max_tokens=8
    )
    assert reply.choices[0].message.content
    credits = httpx.get(app_url + "/v1/credits", headers=headers).json()
    cost = Decimal(str(reply.usage.model_extra["cost"]))  # type: ignore[union-attr,index]
    assert cost > 0 and Decimal(credits["balance"]) == before - cost
    assert credits["held"] == "0.000000"


def test_admin_signs_in_and_sees_every_customer(page) -> None:  # type: ignore[no-untyped-def]
    _sign_in(page, DEMO_ADMIN_EMAIL, "not the password")
    page.wait_for_selector("text=Incorrect email or password.")
    _shot(page, "signin-error")

    _sign_in(page, DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD)
    page.wait_for_url(re.compile(r".*/admin/?$"))
    page.wait_for_selector("text=Demo Workspace")
    page.wait_for_selector("text=Ledger verified")
    _shot(page, "admin-home")

    token = next(c["value"] for c in page.context.cookies() if c["name"] == "creditdash_session")
    page.click("text=Sign out")
    page.wait_for_selector("#landing")  # signed out: the public landing page
    # The old token is dead on the server, not only forgotten by the browser.
    page.context.add_cookies([{"name": "creditdash_session", "value": token, "url": page.url}])
    page.goto("/admin")
    page.wait_for_selector("#email")
    assert urlparse(page.url).path == "/signin"


def test_customer_sees_their_balance_and_not_the_admin_home(page) -> None:  # type: ignore[no-untyped-def]
    _sign_in(page, DEMO_CUSTOMER_EMAIL, DEMO_CUSTOMER_PASSWORD)
    page.wait_for_url(re.compile(r".*/home/?$"))
    page.wait_for_selector("text=Available")
    assert page.locator("text=Admin").count() == 0
    _shot(page, "customer-home")

    page.goto("/admin")
    page.wait_for_url(re.compile(r".*/home/?$"))
    assert page.locator("text=Ledger verified").count() == 0
    assert page.locator("text=admin@example.com").count() == 0
