"""Automatic top-ups through the real gateway: a burst of requests crossing the threshold
together makes one order, credited once by its signed (sandbox) webhook, on both databases;
and three declines pause the rule with one email to each owner and billing member."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import func, select

from creditdash.accounts import users
from creditdash.accounts.models import Membership
from creditdash.billing import health, ledger
from creditdash.billing.balances import customer_balance
from creditdash.billing.invoicing import profiles
from creditdash.billing.payments import autotopup, autotopup_rules, packages
from creditdash.billing.payments.autotopup_models import AutoTopupAttempt, AutoTopupRule
from creditdash.billing.payments.models import PaymentOrder
from creditdash.billing.payments.verify import verify_payments
from creditdash.core import db, settings
from creditdash.core.audit import CLI
from creditdash.notify import dispatch, mail
from tests.notify.smtp import Inbox, smtp_inbox
from tests.proxy.conftest import GatewayRig

__all__ = ["smtp_inbox"]  # the SMTP server fixture, used below

STARTER = 10_000_000
BODY = {"model": "chat", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 50}


def _wait_for(predicate: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _shop_ready(rig: GatewayRig) -> None:
    with db.session_scope(engine=rig.engine) as session:
        packages.seed_demo_packages(session, actor=CLI)
        profiles.seed_demo_seller(session, actor=CLI)


def _save_card(customer_id: str, card: str) -> None:
    with db.session_scope() as session:
        pending = autotopup_rules.start_setup(
            session, customer_id=customer_id, actor=CLI, accept=True
        )
        session.expunge(pending)
    opened = autotopup.open_setup(pending.id)
    for body in autotopup.sandbox_setup_events(opened, card):
        autotopup.deliver_sandbox_event(body, settings.get_settings())


def _rule(rig: GatewayRig, customer_id: str, threshold_micros: int) -> None:
    data = autotopup_rules.RuleInput(
        threshold_micros=threshold_micros, package_name="Starter", cooldown_s=0
    )
    with db.session_scope() as session:
        autotopup_rules.set_rule(session, customer_id=customer_id, data=data, actor=CLI)
    rig.app.state.gateway.keys.clear()  # as the key cache would after its 5 s


def _count(rig: GatewayRig, model: Any, customer_id: str) -> int:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        return int(
            session.execute(
                select(func.count()).select_from(model).where(model.customer_id == customer_id)
            ).scalar_one()
        )


def _available(customer_id: str) -> int:
    with db.session_scope(readonly=True) as session:
        return customer_balance(session, customer_id).available_micros


async def _race(rig: GatewayRig, key: str, n: int) -> list[object]:
    client = rig.async_client(key)
    try:
        calls = [client.chat.completions.create(**BODY) for _ in range(n)]  # type: ignore[call-overload]
        return await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await client.close()


def _books_ok(rig: GatewayRig) -> None:
    with db.session_scope(engine=rig.engine, readonly=True, snapshot=True) as session:
        assert health.check(session) == []
        assert ledger.verify(session) == []
        assert verify_payments(session) == []


def test_a_burst_crossing_the_threshold_buys_once(rig_any_backend: GatewayRig) -> None:
    rig = rig_any_backend
    _shop_ready(rig)
    start = 3 * STARTER
    customer, _account, key = rig.new_customer(start)
    _save_card(customer, "4242424242424242")
    _rule(rig, customer, threshold_micros=start)  # the first charge crosses the line
    results = asyncio.run(_race(rig, key, 40))
    assert not [r for r in results if isinstance(r, Exception)]
    _wait_for(lambda: _count(rig, AutoTopupAttempt, customer) == 1)
    _wait_for(lambda: _available(customer) > start)
    time.sleep(0.5)  # the other settlements' late triggers find nothing to do
    assert autotopup.check_all() == 0
    assert _count(rig, AutoTopupAttempt, customer) == 1
    assert _count(rig, PaymentOrder, customer) == 1
    with db.session_scope(readonly=True) as session:
        [attempt] = session.execute(
            select(AutoTopupAttempt).where(AutoTopupAttempt.customer_id == customer)  # type: ignore[arg-type]
        ).scalars()
        assert attempt.status == "succeeded" and attempt.trigger == "gateway"
        rule = session.get(AutoTopupRule, customer)
        assert rule is not None and rule.in_flight_attempt_id is None
        charged = start - customer_balance(session, customer).available_micros + STARTER
    assert 0 < charged < STARTER  # forty small requests, then exactly one Starter credited
    _books_ok(rig)


def test_three_declines_pause_and_send_one_email_each(rig: GatewayRig, smtp_inbox: Inbox) -> None:
    _shop_ready(rig)
    customer, _account, key = rig.new_customer(3 * STARTER)
    with db.session_scope(engine=rig.engine) as session:
        for address, role in [("boss@topup.example.com", "owner"), ("money@topup.example.com",
                              "billing"), ("dev@topup.example.com", "developer")]:  # fmt: skip
            user = users.create_user(session, email=address, password=None)
            assert user.id is not None
            session.add(Membership(customer_id=customer, user_id=user.id, role=role))
    _save_card(customer, "4000000000000002")
    _rule(rig, customer, threshold_micros=100 * STARTER)  # always below: every charge triggers
    client = rig.client(key)
    for expected in (1, 2, 3):
        client.chat.completions.create(**BODY)  # type: ignore[call-overload]
        _wait_for(lambda n=expected: _count(rig, AutoTopupAttempt, customer) == n)
    client.chat.completions.create(**BODY)  # type: ignore[call-overload]
    time.sleep(0.5)
    assert _count(rig, AutoTopupAttempt, customer) == 3  # paused: no fourth attempt
    with db.session_scope(readonly=True) as session:
        rule = session.get(AutoTopupRule, customer)
        assert rule is not None and rule.status == "paused"
    # Two jobs loops at once: each email is made once and sent once.
    dispatch.mail_events_once()
    dispatch.mail_events_once()
    mail.send_due_mail()
    assert mail.send_due_mail() == 0
    for address in ("boss@topup.example.com", "money@topup.example.com"):
        subjects = [str(m["Subject"]) for m in smtp_inbox.to(address)]
        assert sum("paused" in s for s in subjects) == 1, subjects
    paused = next(m for m in smtp_inbox.to("boss@topup.example.com") if "paused" in m["Subject"])
    assert "/billing/autotopup?pay=ord_" in paused.get_content()
    assert smtp_inbox.to("dev@topup.example.com") == []
    assert _available(customer) < 3 * STARTER  # nothing credited
    _books_ok(rig)
