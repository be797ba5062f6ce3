"""Destructive actions ask first: the handler that opens the confirmation writes nothing, the
confirm handler does the write once, and the message says what happened in words and amounts.
Also sign-up carrying a chosen package on to its checkout."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from reflex.istate.data import RouterData
from reflex.state import State
from sqlalchemy import select
from sqlalchemy.engine import Engine

from creditdash.accounts import api_keys, sessions, users
from creditdash.accounts.models import ApiKey, Customer, Membership
from creditdash.billing.balances import customer_balance
from creditdash.billing.invoicing import profiles
from creditdash.billing.payments import manual, orders, packages
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.numbers import credits_text
from creditdash.state.admin.customers import AdminState
from creditdash.state.admin.orders import AdminOrdersState
from creditdash.state.portal.keys import KeysState
from creditdash.state.portal.signup import SignUpState
from creditdash.state.portal.team import TeamState
from tests.factories import funded_customer, signed_up
from tests.state.browser import connection


def _state(cls: type, token: str = "", url: str = "http://localhost:3000/") -> Any:
    root = State(_reflex_internal_init=True)  # type: ignore[call-arg]
    sub = root.get_substate(cls.get_full_name().split(".")[1:])
    router = connection(token)
    sub.router = RouterData.from_router_data(
        {"headers": dict(router.headers.raw_headers), "pathname": url, "asPath": url}
    )
    return sub


def _run(state: Any, handler: str, *args: object) -> Any:
    result = getattr(type(state), handler).fn(state, *args)
    return asyncio.run(result) if asyncio.iscoroutine(result) else result


def _token(user_id: int) -> str:
    with db.session_scope() as session:
        return sessions.start_session(session, user_id=user_id, ttl=timedelta(hours=1))


def _admins() -> tuple[int, int]:
    with db.session_scope() as session:
        maker = users.create_user(
            session, email="maker@example.com", password=None, is_platform_admin=True
        )
        checker = users.create_user(
            session, email="checker@example.com", password=None, is_platform_admin=True
        )
        return maker.id or 0, checker.id or 0


def _available(customer_id: str) -> int:
    with db.session_scope(readonly=True) as session:
        return customer_balance(session, customer_id).available_micros


def _paid_custom_order(engine: Engine) -> tuple[str, str, str]:
    """A paid bank-transfer order of 1,000.00 EUR for 1,000 credits: (customer, order, admin)."""
    who = funded_customer(engine, credits_micros=0, name="Acme")
    maker_id, checker_id = _admins()
    with db.session_scope() as session:
        packages.seed_demo_packages(session, actor=Actor(label="test"))
        profiles.seed_demo_seller(session, actor=Actor(label="test"))
        order = orders.create_order(
            session,
            customer_id=who.customer_id,
            package=packages.find_package(session, "Custom"),
            actor=Actor.user(maker_id, "maker@example.com"),
        )
        order_id = order.id
    with db.session_scope() as session:
        manual.approve(
            session,
            order_id=order_id,
            actor=Actor.user(checker_id, "checker@example.com"),
            payment_reference="SEPA-1",
        )
    return who.customer_id, order_id, _token(checker_id)


def test_a_refund_is_previewed_then_done_once_confirmed(engine: Engine) -> None:
    customer_id, order_id, admin = _paid_custom_order(engine)
    assert _available(customer_id) == 1_000_000_000
    state = _state(AdminOrdersState, admin)
    _run(state, "set_filter", "all")
    form = {"order_id": order_id, "amount": "10", "reason": "asked nicely"}
    with db.session_scope(readonly=True) as session:
        gross = orders.get_order(session, order_id).gross_minor  # with the seller's VAT
    taken = 1_000_000_000 * 1000 // gross  # what the refund service takes for 10.00 of it
    shown = credits_text(taken)

    _run(state, "ask_refund", form)
    assert state.admin_error == ""
    assert "Refund €10.00 to Acme" in state.confirm_text
    assert f"removes {shown} credits" in state.confirm_text
    with db.session_scope(readonly=True) as session:
        assert orders.get_order(session, order_id).refunded_minor == 0  # asked, not done
    assert _available(customer_id) == 1_000_000_000

    _run(state, "confirm_refund")
    assert state.confirm_text == "" and state.admin_error == ""
    assert state.admin_notice.startswith(f"Refunded €10.00; {shown} credits removed from Acme")
    assert order_id not in state.admin_notice  # words, not internal ids
    assert _available(customer_id) == 1_000_000_000 - taken
    _run(state, "confirm_refund")  # a second click has nothing pending
    assert _available(customer_id) == 1_000_000_000 - taken


def test_a_refund_refused_by_its_check_opens_no_confirmation(engine: Engine) -> None:
    _customer_id, order_id, admin = _paid_custom_order(engine)
    state = _state(AdminOrdersState, admin)
    _run(state, "set_filter", "all")
    _run(state, "ask_refund", {"order_id": order_id, "amount": "10.001", "reason": "x"})
    assert "decimal places" in state.admin_error and state.confirm_text == ""
    _run(state, "ask_refund", {"order_id": order_id, "amount": "5000", "reason": "x"})
    assert "the refund policy allows at most" in state.admin_error
    assert state.confirm_text == ""
    _run(state, "ask_refund", {"order_id": order_id, "amount": "5", "reason": " "})
    assert "reason" in state.admin_error and state.confirm_text == ""


def test_a_debit_and_a_suspension_ask_first(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=20_000_000, name="Acme")
    _maker, checker = _admins()
    state = _state(AdminState, _token(checker))
    _run(state, "load")
    with db.session_scope(readonly=True) as session:
        name = session.get(Customer, who.customer_id).name  # type: ignore[union-attr]
    form = {
        "customer_id": who.customer_id,
        "direction": "debit",
        "amount": "5.5",
        "reason": "double grant",
        "key": "k-1",
    }
    _run(state, "ask_adjust", form)
    assert f"Remove 5.50 credits from {name}" in state.confirm_text
    assert state.confirm_for == who.customer_id
    assert _available(who.customer_id) == 20_000_000
    _run(state, "confirm")
    assert state.admin_notice == f"Took back 5.50 credits from {name}."
    assert _available(who.customer_id) == 14_500_000 and state.confirm_text == ""

    # A grant is not destructive: it runs at once.
    _run(state, "ask_adjust", {**form, "direction": "grant", "amount": "1", "key": "k-2"})
    assert state.confirm_text == "" and state.admin_notice == f"Granted 1.00 credits to {name}."
    assert _available(who.customer_id) == 15_500_000

    _run(state, "ask_status", who.customer_id, "suspended")
    assert "Suspend" in state.confirm_text
    with db.session_scope(readonly=True) as session:
        assert session.get(Customer, who.customer_id).status == "active"  # type: ignore[union-attr]
    _run(state, "cancel_confirm")
    _run(state, "confirm")  # cancelled: nothing pending
    with db.session_scope(readonly=True) as session:
        assert session.get(Customer, who.customer_id).status == "active"  # type: ignore[union-attr]
    _run(state, "ask_status", who.customer_id, "suspended")
    _run(state, "confirm")
    assert state.admin_notice.startswith(f"{name} suspended")
    with db.session_scope(readonly=True) as session:
        assert session.get(Customer, who.customer_id).status == "suspended"  # type: ignore[union-attr]


def test_key_revocation_and_member_removal_ask_first(engine: Engine) -> None:
    owner_id, customer_id = signed_up()
    with db.session_scope() as session:
        key, _raw = api_keys.create_api_key(session, customer_id=customer_id, name="production")
        key_id = key.id
        mate = users.create_user(session, email="mate@example.com", password=None)
        session.add(Membership(customer_id=customer_id, user_id=mate.id or 0, role="developer"))
        mate_id = mate.id
    token = _token(owner_id)

    keys = _state(KeysState, token)
    _run(keys, "load")
    _run(keys, "ask_revoke", key_id)
    assert "“production”" in keys.confirm_text
    with db.session_scope(readonly=True) as session:
        assert session.get(ApiKey, key_id).revoked_at is None  # type: ignore[union-attr]
    _run(keys, "confirm_revoke")
    assert keys.notice == "Key “production” revoked." and keys.confirm_text == ""
    with db.session_scope(readonly=True) as session:
        assert session.get(ApiKey, key_id).revoked_at is not None  # type: ignore[union-attr]

    team = _state(TeamState, token)
    _run(team, "load")
    _run(team, "ask_remove", str(mate_id))
    assert "Remove mate@example.com from Acme Labs?" in team.confirm_text
    assert len(team.team) == 2
    _run(team, "confirm_remove")
    assert team.team_notice == "mate@example.com removed from Acme Labs."
    with db.session_scope(readonly=True) as session:
        left = session.execute(
            select(Membership.user_id).where(Membership.customer_id == customer_id)
        ).scalars()
        assert list(left) == [owner_id]


def _next_page(result: object) -> str:
    """Where a sign-in handoff (cookie_then) sends the browser next."""
    shown = unquote(str(result))
    return shown.split("next=", 1)[1].split('"', 1)[0].split("'", 1)[0].split("\\", 1)[0]


@pytest.mark.parametrize(("asked", "chosen"), [("growth", "Growth"), ("Nope", "")])
def test_sign_up_keeps_the_package_and_continues_to_its_checkout(
    engine: Engine, asked: str, chosen: str
) -> None:
    with db.session_scope() as session:
        packages.seed_demo_packages(session, actor=Actor(label="test"))
    state = _state(SignUpState, url=f"http://localhost:3000/signup?package={asked}")
    _run(state, "load")
    assert state.package == chosen
    form = {
        "name": "Ada",
        "workspace": "Ada Labs",
        "email": "ada@example.com",
        "password": "short",
        "confirm_password": "short",
    }
    _run(state, "sign_up", form)
    assert state.error_field == "password" and "at least 10 characters" in state.error
    assert state.package == chosen  # a refusal keeps the choice
    good = {**form, "password": "a-long-password-1", "confirm_password": "a-long-password-1"}
    _run(state, "sign_up", {**good, "confirm_password": "something-else"})
    assert state.error_field == "confirm_password"
    result = _run(state, "sign_up", good)
    assert state.error == ""
    assert _next_page(result) == ("/billing?package=Growth" if chosen else "/home")
