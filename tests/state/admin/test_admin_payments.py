"""The admin payments page: the last reconcile run, its findings, open disputes, run now."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from creditdash.billing.balances import customer_balance
from creditdash.billing.payments import orders, packages, reconcile
from creditdash.billing.payments.reconcile_models import Dispute, ReconcileRun
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.state.admin.payments import AdminPaymentsState
from tests.state.admin.test_admin_guard import _call, world

__all__ = ["world"]


def _sandbox_order(world: dict[str, Any]) -> tuple[str, int]:
    with db.session_scope() as session:
        order = orders.create_order(
            session,
            customer_id=world["customer_id"],
            package=packages.find_package(session, "Growth"),
            actor=Actor(label="test"),
        )
        assert order.provider == "sandbox"
        return order.id, order.gross_minor


def _runs() -> int:
    with db.session_scope(readonly=True) as session:
        return int(session.execute(select(func.count(ReconcileRun.id))).scalar_one())


def test_run_now_credits_and_the_page_shows_it(world: dict[str, Any]) -> None:
    admin = world["checker_token"]
    state, _ = _call(AdminPaymentsState, "load", admin)
    assert state.summary == "No reconcile run yet." and state.findings == []
    order_id, gross = _sandbox_order(world)
    reconcile.record_sandbox_payment(
        {
            "id": "cs_sandbox_lost",
            "client_reference_id": order_id,
            "amount_total": gross,
            "currency": "eur",
            "payment_intent": "pi_sandbox_lost",
        }
    )
    with db.session_scope() as session:
        session.add(
            Dispute(
                id="dsp_page",
                provider="stripe",
                provider_dispute_id="dp_page",
                order_id=world["order_id"],
                customer_id=world["customer_id"],
                amount_minor=1000,
                currency="EUR",
                frozen_micros=2_500_000,
            )
        )
    state, _ = _call(AdminPaymentsState, "run_now", admin)
    assert state.admin_error == ""
    assert "1 credited" in state.admin_notice
    [finding] = state.findings
    assert finding["kind"] == "paid, not credited" and finding["order_id"] == order_id
    assert finding["action"] == "credited"
    assert "1 credited now" in state.summary
    [dispute] = state.open_disputes
    assert dispute["order_id"] == world["order_id"] and dispute["frozen"] == "2.500000"
    with db.session_scope(readonly=True) as session:
        assert customer_balance(session, world["customer_id"]).available_micros == 55_000_000


def test_run_now_is_refused_to_a_customer(world: dict[str, Any]) -> None:
    state, result = _call(AdminPaymentsState, "run_now", world["customer_token"])
    assert result is not None  # the guard's redirect
    assert state.admin_notice == "" and _runs() == 0
