"""Portal event handlers called directly, as a browser could, with forged arguments and a
forged workspace id: nothing of another customer is read or changed."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from reflex.state import State
from sqlalchemy import select
from sqlalchemy.engine import Engine

from creditdash.accounts import api_keys, sessions
from creditdash.accounts.models import ApiKey, Membership
from creditdash.billing import metering
from creditdash.billing.invoicing import profiles
from creditdash.billing.models import UsageEntry
from creditdash.billing.payments import orders, packages
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.state.base import SessionState
from creditdash.state.portal.billing import BillingState
from creditdash.state.portal.keys import KeysState
from creditdash.state.portal.usage import UsageState
from tests.factories import funded_customer
from tests.state.browser import connection


def _state(cls: type, token: str, **values: object) -> Any:
    root = State(_reflex_internal_init=True)  # type: ignore[call-arg]
    sub = root.get_substate(cls.get_full_name().split(".")[1:])
    sub.router = connection(token)
    for name, value in values.items():
        setattr(sub, name, value)
    return sub


def _run(state: Any, cls: type, handler: str, *args: object) -> Any:
    return asyncio.run(getattr(cls, handler).fn(state, *args))


def _member_token(engine: Engine, customer_id: str) -> str:
    with db.session_scope() as session:
        user_id = session.execute(
            select(Membership.user_id).where(Membership.customer_id == customer_id)
        ).scalar_one()
        return sessions.start_session(session, user_id=user_id, ttl=timedelta(hours=1))


def _victim(engine: Engine) -> dict[str, str]:
    victim = funded_customer(engine, credits_micros=5_000_000, name="Victim")
    with db.session_scope() as session:
        key, _raw = api_keys.create_api_key(session, customer_id=victim.customer_id, name="v")
        packages.seed_demo_packages(session, actor=Actor(label="t"))
        profiles.seed_demo_seller(session, actor=Actor(label="t"))
        order = orders.create_order(
            session,
            customer_id=victim.customer_id,
            package=packages.find_package(session, "Custom"),
            actor=Actor(label="t"),
        )
        key_id, order_id = key.id, order.id
    with db.session_scope() as session:
        hold = metering.reserve(
            session,
            request_id="req_victim",
            account_id=victim.account_id,
            amount_micros=1000,
            ttl=timedelta(minutes=5),
        )
        metering.settle(
            session,
            hold_id=hold,
            account_id=victim.account_id,
            price_micros=10,
            record=UsageEntry(
                id="req_victim",
                customer_id=victim.customer_id,
                api_key_id=key_id,
                endpoint="chat.completions",
                public_model="secret-model",
                status="ok",
                usage_source="provider",
            ),
        )
    return {"customer_id": victim.customer_id, "key_id": key_id, "order_id": order_id}


def test_forged_workspace_and_ids_reach_nothing(sqlite_engine: Engine) -> None:
    victim = _victim(sqlite_engine)
    attacker = funded_customer(sqlite_engine, credits_micros=0, name="Attacker")
    token = _member_token(sqlite_engine, attacker.customer_id)

    keys = _state(KeysState, token, workspace_id=victim["customer_id"])
    _run(keys, KeysState, "revoke", victim["key_id"])
    assert keys.workspace_id == attacker.customer_id  # the forged id was replaced
    assert "not found" in keys.error.lower()
    with db.session_scope(readonly=True) as session:
        assert session.get(ApiKey, victim["key_id"]).revoked_at is None  # type: ignore[union-attr]

    usage = _state(UsageState, token, workspace_id=victim["customer_id"])
    _run(usage, UsageState, "show", "req_victim")
    assert usage.detail is None and "not found" in usage.error.lower()
    _run(usage, UsageState, "load")
    assert usage.rows == [] and usage.models == []

    billing = _state(
        BillingState, token, workspace_id=victim["customer_id"], pending_order=victim["order_id"]
    )
    _run(billing, BillingState, "tick", "")
    assert billing.pending_order == "" and "Payment received" not in billing.notice
    _run(billing, BillingState, "load")
    assert billing.orders == [] and billing.invoices == []


def test_sign_out_leaves_the_tab_state_behind(sqlite_engine: Engine) -> None:
    who = funded_customer(sqlite_engine, credits_micros=0)
    token = _member_token(sqlite_engine, who.customer_id)
    state = _state(SessionState, token)
    result = _run(state, SessionState, "sign_out")
    assert "sessionStorage.clear()" in str(result)
    with db.session_scope(readonly=True) as session:
        assert sessions.user_for_token(session, token) is None
