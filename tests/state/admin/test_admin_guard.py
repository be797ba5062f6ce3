"""Admin event handlers called directly, as a browser could, with and without the admin role:
non-admins are refused on the server and nothing changes; admins act once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from reflex.state import State
from sqlalchemy import select
from sqlalchemy.engine import Engine

from creditdash.accounts import sessions, users
from creditdash.accounts.models import Membership
from creditdash.billing.balances import customer_balance
from creditdash.billing.invoicing import profiles
from creditdash.billing.payments import orders, packages
from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.catalog.models import PublicModel
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.demo import DEMO_CATALOG
from creditdash.state.admin.customers import AdminState
from creditdash.state.admin.orders import AdminOrdersState
from creditdash.state.admin.prices import AdminModelsState
from tests.factories import funded_customer
from tests.state.browser import connection


def _state(cls: type, token: str) -> Any:
    root = State(_reflex_internal_init=True)  # type: ignore[call-arg]
    sub = root.get_substate(cls.get_full_name().split(".")[1:])
    sub.router = connection(token)
    return sub


def _call(cls: type, handler: str, token: str, *args: object) -> tuple[Any, Any]:
    state = _state(cls, token)
    result = asyncio.run(getattr(cls, handler).fn(state, *args))
    return state, result


def _token(user_id: int) -> str:
    with db.session_scope() as session:
        return sessions.start_session(session, user_id=user_id, ttl=timedelta(hours=1))


@pytest.fixture
def world(sqlite_engine: Engine) -> dict[str, Any]:
    who = funded_customer(sqlite_engine, credits_micros=0)
    with db.session_scope() as session:
        packages.seed_demo_packages(session, actor=Actor(label="test"))
        profiles.seed_demo_seller(session, actor=Actor(label="test"))
        import_catalog(session, parse_catalog(DEMO_CATALOG))
        maker = users.create_user(
            session, email="maker@example.com", password=None, is_platform_admin=True
        )
        checker = users.create_user(
            session, email="checker@example.com", password=None, is_platform_admin=True
        )
        member_id = session.execute(
            select(Membership.user_id).where(Membership.customer_id == who.customer_id)
        ).scalar_one()
        order = orders.create_order(
            session,
            customer_id=who.customer_id,
            package=packages.find_package(session, "Custom"),
            actor=Actor.user(maker.id or 0, maker.email),
        )
        order_id = order.id
        maker_id, checker_id = maker.id, checker.id
    return {
        "customer_id": who.customer_id,
        "order_id": order_id,
        "customer_token": _token(member_id),
        "maker_token": _token(maker_id or 0),
        "checker_token": _token(checker_id or 0),
    }


def _available(customer_id: str) -> int:
    with db.session_scope(readonly=True) as session:
        return customer_balance(session, customer_id).available_micros


def test_non_admin_calls_are_refused_and_change_nothing(world: dict[str, Any]) -> None:
    token = world["customer_token"]
    form = {"order_id": world["order_id"], "reference": "FORGED"}
    state, result = _call(AdminOrdersState, "approve", token, form)
    assert "/home" in str(result) and state.rows == []
    _state2, result = _call(
        AdminState,
        "adjust",
        token,
        {
            "customer_id": world["customer_id"],
            "direction": "grant",
            "amount": "1000",
            "reason": "free money",
            "key": "k1",
        },
    )
    assert "/home" in str(result)
    _state3, result = _call(
        AdminModelsState,
        "save_price",
        token,
        {"model": "gpt-4o-mini", "input": "0", "output": "0", "cached": "0", "fee": "0"},
    )
    assert "/home" in str(result)
    _s4, result = _call(AdminState, "set_status", token, world["customer_id"], "suspended")
    assert "/home" in str(result)
    _s5, result = _call(AdminOrdersState, "approve", "", form)  # signed out entirely
    assert "'/signin'" in str(result) or '"/signin"' in str(result)
    assert _available(world["customer_id"]) == 0
    with db.session_scope(readonly=True) as session:
        assert orders.get_order(session, world["order_id"]).status == "awaiting_payment"
        model = session.execute(
            select(PublicModel).where(PublicModel.name == "gpt-4o-mini")
        ).scalar_one()
        assert model.input_price_micros_per_mtok == 600_000


def test_admin_approval_credits_once_and_respects_maker_checker(world: dict[str, Any]) -> None:
    form = {"order_id": world["order_id"], "reference": "SEPA-1"}
    state, _ = _call(AdminOrdersState, "approve", world["maker_token"], form)
    assert "cannot also approve" in state.admin_error
    assert _available(world["customer_id"]) == 0
    state, _ = _call(AdminOrdersState, "approve", world["checker_token"], form)
    assert state.admin_error == "" and "credited" in state.admin_notice
    assert _available(world["customer_id"]) == 1_000_000_000
    state, _ = _call(AdminOrdersState, "approve", world["checker_token"], form)
    assert "is paid" in state.admin_error
    assert _available(world["customer_id"]) == 1_000_000_000


def test_admin_adjustment_is_idempotent_per_form(world: dict[str, Any]) -> None:
    form = {
        "customer_id": world["customer_id"],
        "direction": "grant",
        "amount": "2.5",
        "reason": "goodwill",
        "key": "form-1",
    }
    _call(AdminState, "adjust", world["checker_token"], form)
    _call(AdminState, "adjust", world["checker_token"], form)  # a double submit
    assert _available(world["customer_id"]) == 2_500_000


def test_admin_price_change_refuses_a_silent_loss(world: dict[str, Any]) -> None:
    form = {"model": "gpt-4o-mini", "input": "0.01", "output": "0.01", "cached": "0.01", "fee": "0"}
    state, _ = _call(AdminModelsState, "save_price", world["checker_token"], form)
    assert "loses money" in state.admin_error
    state, _ = _call(
        AdminModelsState, "save_price", world["checker_token"], {**form, "acknowledge": "on"}
    )
    assert state.admin_error == "" and "saved" in state.admin_notice
    with db.session_scope(readonly=True) as session:
        model = session.execute(
            select(PublicModel).where(PublicModel.name == "gpt-4o-mini")
        ).scalar_one()
    assert model.input_price_micros_per_mtok == 10_000
