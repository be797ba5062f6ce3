"""The `creditdash` command as CONTRACT.md describes it."""

from __future__ import annotations

import json
from decimal import Decimal

from click.testing import CliRunner, Result
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from creditdash.accounts.models import ApiKey, Customer, Membership, User
from creditdash.billing import balances
from creditdash.billing.models import LedgerAccount, Transfer
from creditdash.cli import main
from creditdash.core import db
from creditdash.core.audit import AuditEntry


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def create(email: str, name: str, *extra: str) -> dict[str, str]:
    result = run("customers", "create", "--email", email, "--name", name, *extra, "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def grant(customer_id: str, credits: str, reason: str, key: str) -> Result:
    args = ["customers", "grant", customer_id, "--credits", credits, "--reason", reason]
    return CliRunner().invoke(main, [*args, "--idempotency-key", key])


def table_counts(engine: Engine) -> tuple[int, ...]:
    models = (Customer, User, Membership, ApiKey, AuditEntry, LedgerAccount, Transfer)
    with db.session_scope(engine=engine, readonly=True) as session:
        return tuple(
            int(session.execute(select(func.count()).select_from(model)).scalar_one())
            for model in models
        )


def test_customers_create_json_and_balance(sqlite_engine: Engine) -> None:
    payload = create("Ops@Acme.example.com", "Acme", "--credits", "12.5")
    assert set(payload) == {"customer_id", "api_key"}
    assert payload["customer_id"].startswith("cus_")
    assert payload["api_key"].startswith("sk-cd-")

    shown = run("customers", "balance", payload["customer_id"], "--json")
    assert shown.exit_code == 0
    balance = json.loads(shown.output)
    assert balance == {"balance": "12.500000", "held": "0.000000", "available": "12.500000"}
    assert Decimal(balance["balance"]) == Decimal("12.5")


def test_customers_create_without_credits_starts_at_zero(sqlite_engine: Engine) -> None:
    payload = create("z@zero.example.com", "Z")
    balance = json.loads(run("customers", "balance", payload["customer_id"], "--json").output)
    assert balance == {"balance": "0.000000", "held": "0.000000", "available": "0.000000"}


def test_refusals_are_clear_and_change_nothing(sqlite_engine: Engine) -> None:
    create("a@acme.example.com", "A")
    before = table_counts(sqlite_engine)
    b = ["--email", "b@acme.example.com", "--name", "X"]
    cases = [
        (["--email", "A@ACME.example.com", "--name", "Again"], "already exists"),
        (["--email", "not-an-email", "--name", "X"], "email is not valid"),
        ([*b, "--credits", "-5"], "cannot be negative"),
        ([*b, "--credits", "0.0000001"], "6 decimal places"),
        ([*b, "--credits", "lots"], "decimal number"),
        ([*b, "--credits", "99999999999"], "too large"),
        (["--email", "b@acme.example.com", "--name", ""], "name must be"),
    ]
    for args, message in cases:
        refused = CliRunner().invoke(main, ["customers", "create", *args])
        assert refused.exit_code == 1, args
        assert message in refused.output, refused.output
        assert "Traceback" not in refused.output
    assert table_counts(sqlite_engine) == before
    assert run("ledger", "verify").exit_code == 0


def test_unknown_customer_balance(sqlite_engine: Engine) -> None:
    refused = CliRunner().invoke(main, ["customers", "balance", "cus_nope", "--json"])
    assert refused.exit_code == 1
    assert "customer not found" in refused.output


def test_demo_is_safe_to_run_again(sqlite_engine: Engine) -> None:
    first = run("demo")
    assert first.exit_code == 0
    assert "admin@example.com / creditdash-admin" in first.output and "sk-cd-" in first.output
    second = run("demo")
    assert second.exit_code == 0 and "kept" in second.output
    assert "creditdash-admin" not in second.output  # existing passwords are not re-printed
    assert "not seeded" in run("demo", "--if-empty").output
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        demo = (
            session.execute(select(Customer).where(Customer.email == "demo@example.com"))
            .scalars()
            .all()
        )
        assert len(demo) == 1
        assert balances.customer_balance(session, demo[0].id).posted_micros == 25_000_000
    assert run("ledger", "verify").exit_code == 0


def test_grant_is_idempotent_and_audited_once(sqlite_engine: Engine) -> None:
    customer_id = create("g@g.example.com", "G")["customer_id"]
    assert grant(customer_id, "3", "goodwill", "g1").exit_code == 0
    assert grant(customer_id, "3", "goodwill", "g1").exit_code == 0
    for credits, reason in (("4", "goodwill"), ("3", "another reason")):
        conflict = grant(customer_id, credits, reason, "g1")
        assert conflict.exit_code == 1 and "already used" in conflict.output
    balance = json.loads(run("customers", "balance", customer_id, "--json").output)
    assert balance["balance"] == "3.000000"
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        audited = session.execute(
            select(AuditEntry).where(AuditEntry.action == "credits.grant")
        ).scalars()
        entries = [
            (json.loads(e.before_json or ""), json.loads(e.after_json or "")) for e in audited
        ]
    assert len(entries) == 1
    assert entries[0][0] == {"balance": "0.000000"}
    assert entries[0][1]["balance"] == "3.000000"


def test_keys_create_and_revoke(sqlite_engine: Engine) -> None:
    customer_id = create("k@k.example.com", "K")["customer_id"]
    key = json.loads(
        run("keys", "create", "--customer", customer_id, "--name", "ci", "--json").output
    )
    assert key["api_key"].startswith("sk-cd-")
    assert run("keys", "revoke", "--customer", customer_id, key["key_id"]).exit_code == 0
    missing = CliRunner().invoke(main, ["keys", "revoke", "--customer", customer_id, "key_nope"])
    assert missing.exit_code == 1 and "not found" in missing.output


def test_ledger_verify_fails_on_a_broken_ledger(sqlite_engine: Engine) -> None:
    create("v@v.example.com", "V", "--credits", "1")
    assert run("ledger", "verify").exit_code == 0
    with db.session_scope(engine=sqlite_engine) as session:
        session.execute(
            text("UPDATE ledger_accounts SET debits_posted = debits_posted + 7 WHERE kind = :k"),
            {"k": "platform"},
        )
    broken = CliRunner().invoke(main, ["ledger", "verify"])
    assert broken.exit_code == 1
    assert "violated" in broken.output


def test_unmigrated_database_gets_a_clear_error(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from creditdash.core import settings

    monkeypatch.setenv("CREDITDASH_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    settings.reset_settings()
    db.set_engine(None)
    try:
        refused = CliRunner().invoke(main, ["ledger", "verify"])
        assert refused.exit_code == 1
        assert "creditdash db upgrade" in refused.output
    finally:
        db.set_engine(None)
        settings.reset_settings()
