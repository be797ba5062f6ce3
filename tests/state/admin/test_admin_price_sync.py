"""The admin pages for the price sync and upstream costs: findings listed and decided through
the guarded handlers (audited as the admin), and the reconciliation's differences and chart
built from stored reports and recorded usage."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select

from creditdash.accounts.api_keys import create_api_key
from creditdash.billing.models import UsageRecord
from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.core import db, settings
from creditdash.core.audit import CLI, AuditEntry
from creditdash.core.ids import new_id
from creditdash.state.admin.prices import AdminModelsState
from creditdash.state.admin.upstream import AdminUpstreamState
from creditdash.upstream.csv_import import import_costs_csv
from tests.state.admin.test_admin_guard import _call, world

__all__ = ["world"]

BELOW_COST = """
providers:
  - name: openai-direct
    base_url: http://127.0.0.1:9/v1
models:
  - name: mini-below-cost
    price: {input_per_mtok: "0.12", output_per_mtok: "0.55", cached_input_per_mtok: "0.06"}
    routes:
      - provider: openai-direct
        upstream_model: gpt-4o-mini
        cost: {input_per_mtok: "0.10", output_per_mtok: "0.50", cached_input_per_mtok: "0.05"}
"""


@pytest.fixture
def synced_world(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    settings.reset_settings()
    with db.session_scope() as session:
        import_catalog(session, parse_catalog(BELOW_COST))
    return world


def test_findings_are_listed_and_accepted_from_the_prices_page(
    synced_world: dict[str, Any],
) -> None:
    admin = synced_world["checker_token"]
    state, _ = _call(AdminModelsState, "run_sync", admin)
    assert state.admin_error == "", state.admin_error
    [finding] = [f for f in state.findings if f["route"].startswith("mini-below-cost:")]
    assert finding["closed"] and finding["losing"]
    assert "input 0.100000 -> 0.150000" in finding["change"]
    state, _ = _call(AdminModelsState, "accept_finding", admin, finding["id"])
    assert state.admin_error == "" and state.admin_notice == "Finding accepted."
    assert not [f for f in state.findings if f["id"] == finding["id"]]
    state, _ = _call(AdminModelsState, "reject_finding", admin, finding["id"])
    assert "already decided" in state.admin_error
    with db.session_scope(readonly=True) as session:
        actors = set(
            session.execute(
                select(AuditEntry.actor_label).where(AuditEntry.action == "price_sync.accepted")
            ).scalars()
        )
    assert actors == {"user:checker@example.com"}


def test_the_upstream_page_shows_differences_and_a_chart(synced_world: dict[str, Any]) -> None:
    admin = synced_world["checker_token"]
    with db.session_scope() as session:
        import_costs_csv(
            session,
            text="day,provider,model,cost\n2026-11-01,openai-direct,gpt-4o-mini-2024-07-18,0.5\n"
            "2026-11-02,openai-direct,gpt-4o-mini,0.25\n",
            actor=CLI,
        )
        key, _ = create_api_key(session, customer_id=synced_world["customer_id"], name="k")
        for day, cost in ((date(2026, 11, 1), 500_000), (date(2026, 11, 2), 200_000)):
            session.add(
                UsageRecord(
                    id=new_id("req"),
                    customer_id=synced_world["customer_id"],
                    api_key_id=key.id,
                    endpoint="chat",
                    public_model="mini-below-cost",
                    provider="openai-direct",
                    upstream_model="gpt-4o-mini",
                    status="ok",
                    usage_source="provider",
                    upstream_cost_micros=cost,
                    created_at=datetime(day.year, day.month, day.day, 9, tzinfo=UTC),
                )
            )
    state, _ = _call(AdminUpstreamState, "load", admin)
    assert "openai-direct (CSV only)" in state.providers
    form = {"provider": "openai-direct (CSV only)", "first_day": "2026-11-01",
            "last_day": "2026-11-02", "tolerance": "0.01"}  # fmt: skip
    state, _ = _call(AdminUpstreamState, "compare", admin, form)
    assert state.admin_error == "", state.admin_error
    assert [(d["day"], d["difference"]) for d in state.differences] == [("2026-11-02", "0.050000")]
    assert [p["day"] for p in state.chart] == ["2026-11-01", "2026-11-02"]
    figure = state.figure
    assert [list(trace.y) for trace in figure.data] == [[0.5, 0.25], [0.5, 0.2]]
    bad, _ = _call(AdminUpstreamState, "compare", admin, {**form, "first_day": "soon"})
    assert bad.admin_error == "from is a date (YYYY-MM-DD)"
