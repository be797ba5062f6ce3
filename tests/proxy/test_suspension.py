"""A suspended workspace's keys get 403 (not 401: the key is real) and nothing is charged."""

from __future__ import annotations

import openai
import pytest

from creditdash.accounts.customers import set_status
from creditdash.billing.balances import customer_balance
from creditdash.core import db
from creditdash.core.audit import Actor
from tests.proxy.conftest import GatewayRig

MESSAGES = [{"role": "user", "content": "Hello"}]


def _status(rig: GatewayRig, status: str) -> None:
    with db.session_scope(engine=rig.engine) as session:
        set_status(
            session,
            customer_id=rig.customer_id,
            status=status,
            actor=Actor(label="admin-test"),
            reason="test",
        )
    rig.app.state.gateway.keys.clear()  # the cache would notice within 5 s anyway


def test_suspended_workspace_is_refused_with_403(rig: GatewayRig) -> None:
    _status(rig, "suspended")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        rig.client().chat.completions.create(model="chat", messages=MESSAGES, max_tokens=5)
    assert refused.value.status_code == 403
    assert refused.value.body["code"] == "workspace_suspended"  # type: ignore[index]
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        assert customer_balance(session, rig.customer_id).posted_micros == 10_000_000
    _status(rig, "active")
    reply = rig.client().chat.completions.create(model="chat", messages=MESSAGES, max_tokens=5)
    assert reply.choices[0].message.content
