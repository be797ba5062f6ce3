"""An admin price change charges the next request the new price; earlier records keep theirs."""

from __future__ import annotations

from creditdash.billing.models import UsageRecord
from creditdash.catalog import pricing
from creditdash.catalog.prices import Price, TokenUsage, cost_micros
from creditdash.core import db
from creditdash.core.audit import Actor
from tests.proxy.conftest import GatewayRig

MESSAGES = [{"role": "user", "content": "Hello"}]
FAKE_USAGE = TokenUsage(prompt_tokens=11, completion_tokens=7)


def _call(rig: GatewayRig) -> str:
    raw = rig.client().chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES, max_tokens=50
    )
    return raw.headers["x-request-id"]


def _price(rig: GatewayRig, request_id: str) -> int:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        found = session.get(UsageRecord, request_id)
        assert found is not None
        return found.price_micros


def test_new_price_applies_to_the_next_request_only(rig: GatewayRig) -> None:
    old = Price(1_000_000, 2_000_000, 500_000)
    new = Price(3_000_000, 6_000_000, 1_500_000)
    first = _call(rig)
    assert _price(rig, first) == cost_micros(old, FAKE_USAGE)
    with db.session_scope(engine=rig.engine) as session:
        pricing.set_model_price(session, model="chat", price=new, actor=Actor(label="admin-test"))
    # The snapshot refreshes within seconds; the test does not wait for the timer.
    rig.app.state.gateway.catalog.invalidate()
    second = _call(rig)
    assert _price(rig, second) == cost_micros(new, FAKE_USAGE)
    assert _price(rig, first) == cost_micros(old, FAKE_USAGE)
