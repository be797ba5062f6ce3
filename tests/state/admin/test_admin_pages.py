"""Every admin page's load handler, called as an admin with at least one row of each kind
present (customers, orders, invoices, usage, prices, schedules, providers, audit entries):
none raises or reports an error, and each fills its tables."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from creditdash.accounts.api_keys import create_api_key
from creditdash.billing import ledger, metering
from creditdash.billing.models import UsageEntry
from creditdash.core import db, settings
from creditdash.core.timeutil import utcnow
from creditdash.state.admin.audit import AdminAuditState
from creditdash.state.admin.customers import AdminState
from creditdash.state.admin.orders import AdminOrdersState
from creditdash.state.admin.prices import AdminModelsState
from creditdash.state.admin.providers import AdminProvidersState
from creditdash.state.admin.requests import AdminRequestsState
from creditdash.state.admin.sales import AdminSalesState
from tests.state.admin.test_admin_guard import _call, world

__all__ = ["world"]


def _busy(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Admin actions through the admin handlers themselves, each leaving an audit entry."""
    # A provider on loopback (nothing is contacted on save): allowed for this test only.
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    settings.reset_settings()
    admin = world["checker_token"]
    state, _ = _call(
        AdminOrdersState,
        "approve",
        admin,
        {"order_id": world["order_id"], "reference": "SEPA-7"},
    )
    assert state.admin_error == ""
    state, _ = _call(
        AdminState,
        "adjust",
        admin,
        {
            "customer_id": world["customer_id"],
            "direction": "grant",
            "amount": "2.5",
            "reason": "goodwill",
            "key": "pages-1",
        },
    )
    assert state.admin_error == ""
    price = {"model": "gpt-4o-mini", "input": "0.7", "output": "2.5", "cached": "0.3", "fee": "0"}
    state, _ = _call(AdminModelsState, "save_price", admin, {**price, "acknowledge": "on"})
    assert state.admin_error == ""
    later = (utcnow() + timedelta(days=2)).replace(tzinfo=None).isoformat(timespec="minutes")
    state, _ = _call(
        AdminModelsState,
        "schedule",
        admin,
        {**price, "input": "0.8", "effective_at": later, "acknowledge": "on"},
    )
    assert state.admin_error == ""
    state, _ = _call(
        AdminProvidersState,
        "save",
        admin,
        {
            "name": "spare",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key": "sk-test-1234567890",
            "timeout_s": "60",
            "enabled": "on",
        },
    )
    assert state.admin_error == ""
    with db.session_scope() as session:
        key, _raw = create_api_key(session, customer_id=world["customer_id"], name="k")
        account_id = ledger.customer_account_id(session, world["customer_id"])
        hold = metering.reserve(
            session,
            request_id="req_pages",
            account_id=account_id,
            amount_micros=1000,
            ttl=timedelta(minutes=5),
        )
        metering.settle(
            session,
            hold_id=hold,
            account_id=account_id,
            price_micros=10**12,  # far beyond the balance: most of it is unbilled
            record=UsageEntry(
                id="req_pages",
                customer_id=world["customer_id"],
                api_key_id=key.id,
                endpoint="chat.completions",
                public_model="gpt-4o-mini",
                status="ok",
                usage_source="provider",
            ),
        )
    return world


def test_every_admin_page_loads_with_data_present(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = _busy(world, monkeypatch)["checker_token"]
    loaded = {}
    for cls in (
        AdminState,
        AdminOrdersState,
        AdminModelsState,
        AdminAuditState,
        AdminProvidersState,
        AdminRequestsState,
        AdminSalesState,
    ):
        state, result = _call(cls, "load", admin)
        assert result is None, cls.__name__
        assert state.admin_error == "", cls.__name__
        loaded[cls] = state
    orders_state, _ = _call(AdminOrdersState, "set_filter", admin, "all")
    assert loaded[AdminState].customers and loaded[AdminState].ledger_problems == []
    assert orders_state.rows
    models = loaded[AdminModelsState]
    assert models.models and models.margin_rows and models.routes and models.schedules
    assert loaded[AdminProvidersState].providers
    assert loaded[AdminSalesState].packages and loaded[AdminSalesState].invoices
    [request] = loaded[AdminRequestsState].rows
    # Shown for reading (core/numbers.py): 0.001 credits charged, 999,999.999 rounded.
    assert (request["cost"], request["unbilled"]) == ("0.001", "1,000,000.00")
    assert loaded[AdminAuditState].entries


def test_audit_page_shows_grants_approvals_and_price_changes(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = _busy(world, monkeypatch)["checker_token"]
    state, _ = _call(AdminAuditState, "load", admin)
    by_action = {row["action"]: row for row in state.entries}
    assert {"order.approve", "credits.grant", "model.price", "model.price_scheduled"} <= set(
        by_action
    )
    approval = by_action["order.approve"]
    assert approval["actor"] == "user:checker@example.com"
    assert approval["target"] == f"payment_order {world['order_id']}"
    assert "payment_reference=SEPA-7" in approval["after"]
    assert len(approval["at"]) == 19 and approval["at"][4] == "-"  # 2026-11-28 10:00:00
    assert by_action["credits.grant"]["reason"] == "goodwill"
    assert by_action["model.price"]["target"].endswith("gpt-4o-mini")
    # Newest first, and the search narrows the list.
    assert state.entries[0]["at"] >= state.entries[-1]["at"]
    searched, _ = _call(AdminAuditState, "set_search", admin, "grant")
    assert [row["action"] for row in searched.entries] == ["credits.grant"]
