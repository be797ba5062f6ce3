"""Workspace budgets through the real gateway: a hard budget is exact under concurrency on both
databases, its 402, threshold and low-balance alerts exactly once, and workspaces without a
budget keep the hot path."""

from __future__ import annotations

import asyncio
import time

import openai
import orjson
from sqlalchemy import func, select

from creditdash.accounts import users
from creditdash.accounts.models import Membership
from creditdash.billing import budgets, health, ledger, metering
from creditdash.billing.adjustments import grant_credits
from creditdash.billing.budget_holds import period_of
from creditdash.billing.budgets_models import Budget, BudgetHold
from creditdash.billing.models import UsageRecord
from creditdash.catalog.prices import Price, TokenUsage, cost_micros, worst_case_micros
from creditdash.core import db
from creditdash.core.audit import CLI
from creditdash.core.outbox import Event
from creditdash.notify import dispatch, mail
from creditdash.proxy.tokens import hold_prompt_tokens
from tests.notify.smtp import Inbox, smtp_inbox
from tests.proxy.conftest import GatewayRig

__all__ = ["smtp_inbox"]  # the SMTP server fixture, used below

PRICE = Price(1_000_000, 2_000_000, 500_000)
FAKE_USAGE = TokenUsage(prompt_tokens=11, completion_tokens=7)
COST = cost_micros(PRICE, FAKE_USAGE)
MESSAGES = [{"role": "user", "content": "Say hello"}]
BODY = {"model": "slowok", "messages": MESSAGES, "max_tokens": 100}
HOLD = worst_case_micros(
    PRICE, prompt_tokens=hold_prompt_tokens(orjson.dumps(BODY)), max_output_tokens=100
)


def set_budget(rig: GatewayRig, customer_id: str, **fields: object) -> None:
    with db.session_scope(engine=rig.engine) as session:
        budgets.set_budget(session, customer_id=customer_id, actor=CLI, **fields)  # type: ignore[arg-type]
    rig.app.state.gateway.keys.clear()  # as the key cache would after its 5 s


def charged(rig: GatewayRig, customer_id: str) -> int:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        total = session.execute(
            select(func.coalesce(func.sum(UsageRecord.price_micros), 0)).where(
                UsageRecord.customer_id == customer_id  # type: ignore[arg-type]
            )
        ).scalar_one()
    return int(total)


def events(rig: GatewayRig, customer_id: str, type_: str) -> list[Event]:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        return list(
            session.execute(
                select(Event).where(Event.customer_id == customer_id, Event.type == type_)  # type: ignore[arg-type]
            ).scalars()
        )


def assert_books_ok(rig: GatewayRig) -> None:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        assert health.check(session) == []
        assert ledger.open_hold_count(session) == 0
        assert session.execute(select(func.count()).select_from(BudgetHold)).scalar_one() == 0


def wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


async def race(rig: GatewayRig, key: str, n: int, body: dict[str, object]) -> list[object]:
    client = rig.async_client(key)
    try:
        calls = [client.chat.completions.create(**body) for _ in range(n)]  # type: ignore[call-overload]
        return await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await client.close()


def test_fifty_requests_racing_past_a_hard_budget_never_spend_more(
    rig_any_backend: GatewayRig,
) -> None:
    rig = rig_any_backend
    customer, _account, key = rig.new_customer(100 * HOLD)
    budget = 3 * HOLD + HOLD // 2  # three worst cases fit at once, far less than the balance
    set_budget(rig, customer, monthly_micros=budget, hard=True, thresholds=[50, 80, 100])
    results = asyncio.run(race(rig, key, 50, BODY))
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(ok) == 3
    assert all(isinstance(r, openai.APIStatusError) and r.status_code == 402 for r in refused)
    error = refused[0].body  # type: ignore[attr-defined]
    assert error["code"] == "budget_exceeded"
    assert error["type"] == "insufficient_credits"
    assert "monthly budget is reached" in error["message"] and "resets on" in error["message"]
    assert charged(rig, customer) == 3 * COST <= budget

    # Sequentially, spend keeps being admitted until what is spent plus one worst case
    # would pass the budget: the total charged never does.
    client = rig.client(key)
    admitted = 3
    while True:
        try:
            client.chat.completions.create(**BODY)  # type: ignore[call-overload]
            admitted += 1
        except openai.APIStatusError as refusal:
            assert refusal.status_code == 402
            assert refusal.body["code"] == "budget_exceeded"  # type: ignore[index]
            break
    assert admitted * COST + HOLD > budget >= admitted * COST == charged(rig, customer)
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        row = session.get(Budget, customer)
        assert row is not None and row.held_micros == 0 and row.spent_micros == admitted * COST
        status = budgets.get_budget_status(session, customer)
        assert (
            status.spent_micros == admitted * COST
            and status.percent == admitted * COST * 100 // budget
        )
    assert_books_ok(rig)
    # Each threshold the spend passed was announced once, however many requests passed it.
    reached = [t for t in (50, 80, 100) if admitted * COST * 100 >= t * budget]
    assert reached  # a hard budget stops short of 100% by less than one worst case
    wait_for(lambda: len(events(rig, customer, "budget.threshold")) == len(reached))
    assert budgets.check_all_alerts() == 0  # the backstop finds nothing left to send
    sent = events(rig, customer, "budget.threshold")
    percents = sorted(orjson.loads(e.data_json)["threshold_percent"] for e in sent)
    assert percents == reached
    assert {e.dedupe_key for e in sent} == {
        f"budget.threshold:{customer}:{period_of()}:{t}" for t in reached
    }


def test_thresholds_alert_once_when_many_requests_cross_together(
    rig_any_backend: GatewayRig,
) -> None:
    rig = rig_any_backend
    customer, _account, key = rig.new_customer(100 * HOLD)
    # A soft budget of ten requests' actual cost: 30 requests pass every threshold at once.
    set_budget(rig, customer, monthly_micros=10 * COST, hard=False, thresholds=[10, 50, 100])
    results = asyncio.run(race(rig, key, 30, {**BODY, "model": "chat"}))
    assert not [r for r in results if isinstance(r, Exception)]  # a soft budget never refuses
    assert charged(rig, customer) == 30 * COST
    wait_for(lambda: len(events(rig, customer, "budget.threshold")) == 3)
    time.sleep(0.3)  # late checks from the other settlements find nothing more to send
    assert budgets.check_all_alerts() == 0
    sent = events(rig, customer, "budget.threshold")
    assert sorted(orjson.loads(e.data_json)["threshold_percent"] for e in sent) == [10, 50, 100]
    data = orjson.loads(sent[0].data_json)
    assert data["budget_micros"] == 10 * COST and data["hard"] is False
    assert data["period"] == period_of()
    assert_books_ok(rig)


def test_threshold_emails_reach_the_alert_audience_once_over_smtp(
    rig: GatewayRig, smtp_inbox: Inbox
) -> None:
    customer, _account, key = rig.new_customer(100 * HOLD)
    with db.session_scope(engine=rig.engine) as session:
        for address, role in [("boss@rig.example.com", "owner"), ("money@rig.example.com",
                              "billing"), ("dev@rig.example.com", "developer")]:  # fmt: skip
            user = users.create_user(session, email=address, password=None)
            assert user.id is not None
            session.add(Membership(customer_id=customer, user_id=user.id, role=role))
    set_budget(rig, customer, monthly_micros=10 * COST, hard=False, thresholds=[50, 100])
    results = asyncio.run(race(rig, key, 30, {**BODY, "model": "chat"}))
    assert not [r for r in results if isinstance(r, Exception)]
    wait_for(lambda: len(events(rig, customer, "budget.threshold")) == 2)
    time.sleep(0.3)
    # Two jobs loops at once make each email once, and two sender passes send each once.
    # The workspace was made with its contact address as an owner: three people are told.
    assert dispatch.mail_events_once() + dispatch.mail_events_once() == 6
    assert mail.send_due_mail() == 6 and mail.send_due_mail() == 0
    assert len({str(m["To"]) for m in smtp_inbox.messages}) == 3
    for address in ("boss@rig.example.com", "money@rig.example.com"):
        subjects = sorted(str(m["Subject"]) for m in smtp_inbox.to(address))
        assert subjects == [
            f"Budget alert: 100% of the {period_of()} budget used",
            f"Budget alert: 50% of the {period_of()} budget used",
        ]
    assert smtp_inbox.to("dev@rig.example.com") == []  # a developer is not told about money


def test_low_balance_alerts_once_per_crossing_and_again_after_a_top_up(rig: GatewayRig) -> None:
    customer, account, key = rig.new_customer(HOLD + 5 * COST)
    line = HOLD + 2 * COST
    set_budget(
        rig, customer, monthly_micros=None, hard=False, thresholds=[], low_balance_micros=line
    )
    client = rig.client(key)
    for _ in range(5):  # below the line after the third
        client.chat.completions.create(**{**BODY, "model": "chat"})  # type: ignore[call-overload]
    wait_for(lambda: len(events(rig, customer, "balance.low")) == 1)
    budgets.check_all_alerts()
    time.sleep(0.2)
    [first] = events(rig, customer, "balance.low")
    assert orjson.loads(first.data_json)["threshold_micros"] == line
    assert orjson.loads(first.data_json)["available_micros"] < line
    with db.session_scope(engine=rig.engine) as session:
        grant_credits(session, customer_id=customer, amount_micros=10 * COST, reason="top-up",
                      actor=CLI, idempotency_key=f"topup:{customer}")  # fmt: skip
    assert budgets.check_all_alerts() == 0  # back above the line: re-armed, nothing sent
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        row = session.get(Budget, customer)
        assert row is not None and row.low_balance_armed
    for _ in range(10):
        client.chat.completions.create(**{**BODY, "model": "chat"})  # type: ignore[call-overload]
    wait_for(lambda: len(events(rig, customer, "balance.low")) == 2)
    budgets.check_all_alerts()
    assert len(events(rig, customer, "balance.low")) == 2
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        assert ledger.get_balance(session, account).available_micros < line
    assert_books_ok(rig)


def test_every_budget_keeps_the_hot_path_and_its_running_totals(
    rig: GatewayRig, monkeypatch: object
) -> None:
    calls: list[str | None] = []
    original = metering.reserve

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("budget_customer_id"))  # type: ignore[arg-type]
        return original(*args, **kwargs)  # type: ignore[arg-type]

    def totals() -> tuple[int, int]:
        with db.session_scope(engine=rig.engine, readonly=True) as session:
            row = session.get(Budget, rig.customer_id)
            assert row is not None
            return row.spent_micros, row.held_micros

    monkeypatch.setattr(metering, "reserve", counting)  # type: ignore[attr-defined]
    client = rig.client()
    client.chat.completions.create(**{**BODY, "model": "chat"})  # type: ignore[call-overload]
    assert calls == []  # placed by the hot path's raw statement
    # A soft budget: still the hot path, and each charge lands in the row's spend.
    set_budget(rig, rig.customer_id, monthly_micros=100 * HOLD, hard=False)
    assert totals() == (charged(rig, rig.customer_id), 0)
    client.chat.completions.create(**{**BODY, "model": "chat"})  # type: ignore[call-overload]
    assert calls == []
    assert totals() == (charged(rig, rig.customer_id), 0)
    # A hard budget: the hot statement counts the hold in the budget and settles it out.
    set_budget(rig, rig.customer_id, monthly_micros=100 * HOLD, hard=True)
    client.chat.completions.create(**{**BODY, "model": "chat"})  # type: ignore[call-overload]
    assert calls == []
    assert totals() == (charged(rig, rig.customer_id), 0)
    with db.session_scope(engine=rig.engine) as session:
        assert budgets.clear_budget(session, customer_id=rig.customer_id, actor=CLI)
    # Still cached as hard: the hot hold finds the budget no longer hard and hands the request
    # to the ledger's path, which lets it through without a budget share.
    client.chat.completions.create(**{**BODY, "model": "chat"})  # type: ignore[call-overload]
    assert calls == [rig.customer_id]
    assert totals() == (charged(rig, rig.customer_id), 0)
    assert_books_ok(rig)
    assert_books_ok(rig)
