"""The sandbox provider credits real balances, so: off outside development, and its pay
endpoint builds no URL from the Host header."""

from __future__ import annotations

import httpx
import pytest

from creditdash.billing.payments.providers import ProviderFailed
from creditdash.core import settings
from tests.billing.shop import (
    Shop,
    session_event,
)


def test_sandbox_pay_ignores_the_host_header(shop: Shop) -> None:
    order = shop.order("Starter")
    pay = f"{shop.base_url}/sandbox/checkout/{order.checkout_session_id}/pay"
    answer = httpx.post(pay, data={"accept_terms": "yes"}, headers={"host": "attacker.invalid:9"})
    assert answer.status_code == 303
    assert shop.get(order.id).status == "paid"


def test_sandbox_is_off_outside_development(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    order = shop.order("Starter")  # opened while the sandbox was on
    monkeypatch.setenv("CREDITDASH_ENVIRONMENT", "production")
    monkeypatch.setenv("CREDITDASH_SECRET_KEY", "x" * 40)
    settings.reset_settings()
    with pytest.raises(ProviderFailed, match="sandbox payment provider is off"):
        shop.order("Starter")
    assert httpx.get(order.checkout_url or "").status_code == 404
    pay = f"{shop.base_url}/sandbox/checkout/{order.checkout_session_id}/pay"
    assert httpx.post(pay, data={"accept_terms": "yes"}).status_code == 404
    assert shop.post_event(session_event(order)).status_code == 400
    assert shop.available() == 0
    monkeypatch.setenv("CREDITDASH_SANDBOX_PAYMENTS", "true")
    settings.reset_settings()
    assert shop.post_event(session_event(order)).json()["outcome"] == "credited"
