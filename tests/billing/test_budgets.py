"""Budget services: validation that changes nothing, the hold's budget share and its release,
period roll-over, status, permissions, and the `creditdash budgets` commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from creditdash.accounts.models import Membership
from creditdash.billing import budget_holds, budgets, health, ledger, metering
from creditdash.billing.budgets_models import Budget
from creditdash.billing.models import UsageRecord
from creditdash.cli import main
from creditdash.core import db
from creditdash.core.audit import CLI, AuditEntry
from creditdash.core.errors import BudgetExceeded, Forbidden, NotFound, ValidationFailed
from creditdash.core.money import MAX_MICROS
from tests.factories import customer_with_key, funded_customer, signed_up, usage_entry

TTL = timedelta(minutes=5)


def budget_row(engine: Engine, customer_id: str) -> Budget:
    with db.session_scope(engine=engine, readonly=True) as session:
        row = session.get(Budget, customer_id)
        assert row is not None
        session.expunge(row)
        return row


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"thresholds": [0]}, "1 to 100"),
        ({"thresholds": [101]}, "1 to 100"),
        ({"thresholds": [50, 50]}, "repeat"),
        ({"thresholds": list(range(1, 12))}, "at most 10"),
        ({"thresholds": [True]}, "whole percent"),
        ({"thresholds": "50"}, "list"),
        ({"monthly_micros": 0}, "monthly budget"),
        ({"monthly_micros": -5}, "monthly budget"),
        ({"monthly_micros": MAX_MICROS + 1}, "monthly budget"),
        ({"low_balance_micros": 0}, "low-balance"),
        ({"monthly_micros": None, "hard": True}, "hard budget needs"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    sqlite_engine: Engine, fields: dict[str, object], message: str
) -> None:
    who = funded_customer(sqlite_engine, credits_micros=1_000_000)
    args: dict[str, object] = {"monthly_micros": 1_000_000, "hard": False}
    args.update(fields)
    with pytest.raises(ValidationFailed, match=message), db.session_scope() as session:
        budgets.set_budget(session, customer_id=who.customer_id, actor=CLI, **args)  # type: ignore[arg-type]
    with db.session_scope(readonly=True) as session:
        assert session.get(Budget, who.customer_id) is None


def test_parse_thresholds() -> None:
    assert budgets.parse_thresholds("80, 50,100") == (50, 80, 100)
    assert budgets.parse_thresholds("") == ()
    for bad in ("50,x", "5.5", "-1", "50,,80", "\u0665\u0660"):
        with pytest.raises(ValidationFailed):
            budgets.parse_thresholds(bad)


def test_unknown_workspace_and_no_budget(sqlite_engine: Engine) -> None:
    with pytest.raises(NotFound), db.session_scope() as session:
        budgets.set_budget(session, customer_id="cus_nope", monthly_micros=5, hard=True, actor=CLI)
    who = funded_customer(sqlite_engine, credits_micros=1)
    with pytest.raises(NotFound), db.session_scope() as session:
        budgets.get_budget_status(session, who.customer_id)


def test_hard_budget_share_of_holds_release_and_roll_over(engine: Engine) -> None:
    who, key_id = customer_with_key(engine, 10_000_000)
    with db.session_scope() as session:
        status = budgets.set_budget(
            session, customer_id=who.customer_id, monthly_micros=1_000, hard=True, actor=CLI
        )
        assert status.spent_micros == 0 and status.percent == 0 and status.hard
    with db.session_scope() as session:
        first = metering.reserve(session, request_id="r1", account_id=who.account_id,
                                 amount_micros=600, ttl=TTL,
                                 budget_customer_id=who.customer_id)  # fmt: skip
    assert first is not None
    # 600 held + 500 would pass 1000: refused, and the balance hold is undone with it.
    with (
        pytest.raises(BudgetExceeded, match="monthly budget is reached"),
        db.session_scope() as session,
    ):
        metering.reserve(session, request_id="r2", account_id=who.account_id,
                         amount_micros=500, ttl=TTL,
                         budget_customer_id=who.customer_id)  # fmt: skip
    with db.session_scope(readonly=True) as session:
        assert ledger.get_balance(session, who.account_id).held_micros == 600
        assert ledger.open_hold_count(session) == 1
        assert health.check(session) == []
    assert budget_row(engine, who.customer_id).held_micros == 600
    with db.session_scope() as session:
        metering.settle(session, hold_id=first, account_id=who.account_id, price_micros=250,
                        record=usage_entry(who, key_id, "r1"), overage=False)  # fmt: skip
    row = budget_row(engine, who.customer_id)
    assert (row.held_micros, row.spent_micros) == (0, 250)
    # A void and an expiry release the share and spend nothing.
    for request_id in ("r3", "r4"):
        with db.session_scope() as session:
            hold = metering.reserve(session, request_id=request_id, account_id=who.account_id,
                                    amount_micros=700, ttl=TTL,
                                    budget_customer_id=who.customer_id)  # fmt: skip
            assert hold is not None
        with db.session_scope() as session:
            if request_id == "r3":
                ledger.void(session, hold_id=hold)
            else:
                assert ledger.expire(session, hold_id=hold)
        assert budget_row(engine, who.customer_id).held_micros == 0
    assert budget_row(engine, who.customer_id).spent_micros == 250
    # A replayed hold is counted once.
    with db.session_scope() as session:
        again = metering.reserve(session, request_id="r5", account_id=who.account_id,
                                 amount_micros=100, ttl=TTL,
                                 budget_customer_id=who.customer_id)  # fmt: skip
    with db.session_scope() as session:
        replay = metering.reserve(session, request_id="r5", account_id=who.account_id,
                                  amount_micros=100, ttl=TTL,
                                  budget_customer_id=who.customer_id)  # fmt: skip
    assert replay == again
    assert budget_row(engine, who.customer_id).held_micros == 100
    # The row still counts last month: the next hold starts the new month from zero spent,
    # keeping what open holds reserve.
    with db.session_scope() as session:
        session.execute(update(Budget).values(period="2000-01", spent_micros=900))
        # ... and so do the usage records it counted.
        session.execute(update(UsageRecord).values(created_at=datetime(2000, 1, 15, tzinfo=UTC)))
    with db.session_scope() as session:
        metering.reserve(session, request_id="r6", account_id=who.account_id,
                         amount_micros=800, ttl=TTL,
                         budget_customer_id=who.customer_id)  # fmt: skip
    row = budget_row(engine, who.customer_id)
    assert (row.period, row.spent_micros, row.held_micros) == (budget_holds.period_of(), 0, 900)
    with db.session_scope(readonly=True) as session:
        assert health.check(session) == []
        status = budgets.get_budget_status(session, who.customer_id)
    assert status.held_micros == 900
    now = datetime.now(UTC)
    assert status.resets_at > now and status.resets_at.day == 1 and status.resets_at.hour == 0


def test_ledger_verify_sees_a_wrong_budget_held_amount(sqlite_engine: Engine) -> None:
    who = funded_customer(sqlite_engine, credits_micros=10_000)
    with db.session_scope() as session:
        budgets.set_budget(session, customer_id=who.customer_id, monthly_micros=9, hard=True,
                           actor=CLI)  # fmt: skip
        session.execute(update(Budget).values(held_micros=5))
    with db.session_scope(readonly=True) as session:
        assert any("held 5" in problem for problem in health.check(session))


def test_next_reset_crosses_the_year() -> None:
    assert budget_holds.next_reset("2026-12") == datetime(2027, 1, 1, tzinfo=UTC)
    assert budget_holds.next_reset("2026-03") == datetime(2026, 4, 1, tzinfo=UTC)


def test_members_need_budgets_manage_and_changes_are_audited(sqlite_engine: Engine) -> None:
    owner, customer_id = signed_up("owner@budget.example.com")
    _stranger, _other = signed_up("stranger@budget.example.com")
    with pytest.raises(Forbidden), db.session_scope() as session:
        budgets.set_budget(session, customer_id=customer_id, monthly_micros=5, hard=False,
                           actor=CLI, user_id=_stranger)  # fmt: skip
    with db.session_scope() as session:
        session.execute(
            update(Membership)
            .where(Membership.user_id == owner)  # type: ignore[arg-type]
            .values(role="developer")
        )
    with pytest.raises(Forbidden), db.session_scope() as session:
        budgets.set_budget(session, customer_id=customer_id, monthly_micros=5, hard=False,
                           actor=CLI, user_id=owner)  # fmt: skip
    with db.session_scope() as session:
        session.execute(update(Membership).values(role="owner"))
    with db.session_scope() as session:
        budgets.set_budget(session, customer_id=customer_id, monthly_micros=5, hard=False,
                           actor=CLI, user_id=owner)  # fmt: skip
        assert budgets.clear_budget(session, customer_id=customer_id, actor=CLI, user_id=owner)
        assert not budgets.clear_budget(session, customer_id=customer_id, actor=CLI)
    with db.session_scope(readonly=True) as session:
        actions = session.execute(
            select(AuditEntry.action).where(AuditEntry.target_id == customer_id)  # type: ignore[arg-type]
        ).scalars()
        assert [a for a in actions if a.startswith("budget.")] == ["budget.set", "budget.clear"]


def test_budgets_commands(sqlite_engine: Engine) -> None:
    who = funded_customer(sqlite_engine, credits_micros=1_000_000)
    runner = CliRunner()
    base = ["--customer", who.customer_id]
    options = ["--monthly", "12.5", "--hard", "--thresholds", "80,50", "--low-balance", "1"]
    shown = runner.invoke(main, ["budgets", "set", *base, *options, "--json"])
    assert shown.exit_code == 0, shown.output
    payload = json.loads(shown.output)
    assert payload["monthly_budget_micros"] == 12_500_000 and payload["hard"] is True
    assert payload["thresholds"] == [50, 80] and payload["low_balance_micros"] == 1_000_000
    text = runner.invoke(main, ["budgets", "show", *base])
    assert text.exit_code == 0 and "12.500000 (hard)" in text.output
    for bad in (["--monthly", "1.0000001"], ["--monthly", "-1"], ["--thresholds", "0"], []):
        refused = runner.invoke(main, ["budgets", "set", *base, *bad])
        assert refused.exit_code == 1 and refused.output.startswith("error: "), refused.output
    assert json.loads(runner.invoke(main, ["budgets", "show", *base, "--json"]).output) == payload
    # docs/contract.md names the workspace as an argument too.
    positional = runner.invoke(main, ["budgets", "show", who.customer_id, "--json"])
    assert json.loads(positional.output) == payload
    both = runner.invoke(main, ["budgets", "show", who.customer_id, *base])
    assert both.exit_code == 1 and "once" in both.output
    cleared = runner.invoke(main, ["budgets", "clear", *base])
    assert cleared.exit_code == 0 and "cleared" in cleared.output
    missing = runner.invoke(main, ["budgets", "show", *base])
    assert missing.exit_code == 1 and "has no budget" in missing.output
    with db.session_scope(readonly=True) as session:
        assert session.execute(select(func.count()).select_from(Budget)).scalar_one() == 1


def test_check_alerts_without_the_gateway(sqlite_engine: Engine) -> None:
    who = funded_customer(sqlite_engine, credits_micros=1_000)
    with db.session_scope() as session:
        budgets.set_budget(session, customer_id=who.customer_id, monthly_micros=None,
                           hard=False, thresholds=[], low_balance_micros=2_000,
                           actor=CLI)  # fmt: skip
    with db.session_scope() as session:
        first = budgets.check_alerts(session, customer_id=who.customer_id)
        assert len(first) == 1
        assert budgets.check_alerts(session, customer_id=who.customer_id) == []
    with db.session_scope() as session:
        statuses = budgets.budget_statuses(session)
    assert statuses[who.customer_id].monthly_budget_micros is None


def test_alerts_low_balance_keeps_the_budget_as_it_is(sqlite_engine: Engine) -> None:
    who = funded_customer(sqlite_engine, credits_micros=1_000)
    runner = CliRunner()
    alone = runner.invoke(main, ["alerts", "low-balance", "--customer", who.customer_id,
                                 "--below", "2", "--json"])  # fmt: skip
    assert alone.exit_code == 0, alone.output
    assert json.loads(alone.output)["low_balance_micros"] == 2_000_000
    with db.session_scope() as session:
        budgets.set_budget(session, customer_id=who.customer_id, monthly_micros=9_000_000,
                           hard=True, thresholds=[75], low_balance_micros=2_000_000,
                           actor=CLI)  # fmt: skip
    moved = runner.invoke(main, ["alerts", "low-balance", "--customer", who.customer_id,
                                 "--below", "0.5"])  # fmt: skip
    assert moved.exit_code == 0 and "0.500000" in moved.output
    with db.session_scope(readonly=True) as session:
        status = budgets.get_budget_status(session, who.customer_id)
    assert (status.monthly_budget_micros, status.hard, status.thresholds) == (
        9_000_000,
        True,
        (75,),
    )
    assert status.low_balance_micros == 500_000
    refused = runner.invoke(main, ["alerts", "low-balance", "--customer", who.customer_id,
                                   "--below", "-1"])  # fmt: skip
    assert refused.exit_code == 1 and refused.output.startswith("error:")
