"""The webhooks page's handlers for real members: an owner adds an endpoint and sees its
secret once; a role without webhooks.manage changes nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from reflex.state import State
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from creditdash.accounts import sessions
from creditdash.accounts.models import Membership
from creditdash.core import db, settings
from creditdash.notify import endpoints
from creditdash.state.portal.webhooks import EVENT_FIELD, WebhooksState
from tests.factories import funded_customer
from tests.state.browser import connection


def _state(token: str) -> Any:
    root = State(_reflex_internal_init=True)  # type: ignore[call-arg]
    sub = root.get_substate(WebhooksState.get_full_name().split(".")[1:])
    sub.router = connection(token)
    return sub


def _run(state: Any, handler: str, *args: object) -> Any:
    return asyncio.run(getattr(WebhooksState, handler).fn(state, *args))


def test_owner_adds_and_other_roles_are_refused(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    settings.reset_settings()
    customer_id = funded_customer(sqlite_engine, credits_micros=0).customer_id
    with db.session_scope() as session:
        user_id = session.execute(
            select(Membership.user_id).where(Membership.customer_id == customer_id)
        ).scalar_one()
        token = sessions.start_session(session, user_id=user_id, ttl=timedelta(hours=1))
    state = _state(token)
    form = {
        "url": "http://127.0.0.1:9/hooks",
        "description": "ci",
        EVENT_FIELD + "key.created": "on",
    }
    _run(state, "add", form)
    assert state.error == "" and state.new_secret.startswith("whsec_")
    [row] = state.endpoints
    assert row["events"] == "key.created" and row["enabled"]
    WebhooksState.forget_secret.fn(state)
    _run(state, "load")
    assert state.new_secret == ""

    # A viewer: it reads the endpoints, and webhooks.manage refuses every change.
    with db.session_scope() as session:
        session.execute(
            update(Membership).where(Membership.user_id == user_id).values(role="viewer")
        )
    viewer = _state(token)
    _run(viewer, "disable", row["id"])
    _run(viewer, "rotate", row["id"])
    assert viewer.role_refusal and viewer.new_secret == ""
    with db.session_scope(readonly=True) as session:
        [endpoint] = endpoints.list_endpoints(session, customer_id=customer_id)
        assert endpoint.enabled
