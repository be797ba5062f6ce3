"""The price sync's margin gate at the gateway: a route the sync closed for costing more than its
model's price is refused as a model with no open route is (404 model_not_found, nothing
charged, nothing sent upstream), and served again once an admin accepts the finding."""

from __future__ import annotations

import openai
import pytest

from creditdash.billing.balances import customer_balance
from creditdash.catalog import price_sync
from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.core import db
from creditdash.core.audit import Actor
from tests.proxy.conftest import GatewayRig

MESSAGES = [{"role": "user", "content": "Hello"}]
ADMIN = Actor(label="admin-test")
# Sold below what the bundled data says gpt-4o-mini costs ($0.15 / $0.60 per 1M tokens), but
# above the cost the route was imported with.
BELOW_COST = """
models:
  - name: mini-below-cost
    price: {input_per_mtok: "0.12", output_per_mtok: "0.55", cached_input_per_mtok: "0.06"}
    max_output_tokens: 100
    routes:
      - provider: fake
        upstream_model: gpt-4o-mini
        cost: {input_per_mtok: "0.10", output_per_mtok: "0.50", cached_input_per_mtok: "0.05"}
"""


def _ask(rig: GatewayRig) -> str | None:
    reply = rig.client().chat.completions.create(
        model="mini-below-cost", messages=MESSAGES, max_tokens=5
    )
    return reply.choices[0].message.content


def test_a_closed_route_is_refused_until_the_finding_is_accepted(rig: GatewayRig) -> None:
    with db.session_scope(engine=rig.engine) as session:
        import_catalog(session, parse_catalog(BELOW_COST))
    rig.app.state.gateway.catalog.invalidate()
    assert _ask(rig)  # open before the sync
    with db.session_scope(engine=rig.engine) as session:
        result = price_sync.sync_prices(session, actor=ADMIN)
    [line] = [ln for ln in result.lines if ln.route.startswith("mini-below-cost:")]
    assert line.outcome == "changed" and line.closed
    rig.app.state.gateway.catalog.invalidate()
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        balance = customer_balance(session, rig.customer_id).posted_micros
    sent = rig.upstream.count("gpt-4o-mini")
    with pytest.raises(openai.NotFoundError) as refused:
        _ask(rig)
    assert refused.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert rig.upstream.count("gpt-4o-mini") == sent
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        assert customer_balance(session, rig.customer_id).posted_micros == balance
        [review] = [
            r for r in price_sync.list_reviews(session) if r.route.startswith("mini-below-cost:")
        ]
    with db.session_scope(engine=rig.engine) as session:
        price_sync.decide_review(session, review_id=review.id, accept=True, actor=ADMIN)
    rig.app.state.gateway.catalog.invalidate()
    assert _ask(rig)
