"""The `creditdash` command as CONTRACT.md describes it."""

from __future__ import annotations

import json
from decimal import Decimal

from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from creditdash.cli import main


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_customers_create_json_and_balance(sqlite_engine: Engine) -> None:
    created = run(
        "customers",
        "create",
        "--email",
        "Ops@Acme.example.com",
        "--name",
        "Acme",
        "--credits",
        "12.5",
        "--json",
    )
    assert created.exit_code == 0, created.output
    payload = json.loads(created.output)
    assert set(payload) == {"customer_id", "api_key"}
    assert payload["customer_id"].startswith("cus_") and payload["api_key"].startswith("sk-cd-")

    shown = run("customers", "balance", payload["customer_id"], "--json")
    assert shown.exit_code == 0
    assert json.loads(shown.output) == {
        "balance": "12.500000",
        "held": "0.000000",
        "available": "12.500000",
    }
    assert Decimal(json.loads(shown.output)["balance"]) == Decimal("12.5")


def test_customers_create_without_credits_starts_at_zero(sqlite_engine: Engine) -> None:
    payload = json.loads(
        run("customers", "create", "--email", "z@zero.example.com", "--name", "Z", "--json").output
    )
    balance = json.loads(run("customers", "balance", payload["customer_id"], "--json").output)
    assert balance == {"balance": "0.000000", "held": "0.000000", "available": "0.000000"}


def test_refusals_are_clear_and_change_nothing(sqlite_engine: Engine) -> None:
    assert (
        run(
            "customers", "create", "--email", "a@acme.example.com", "--name", "A", "--json"
        ).exit_code
        == 0
    )
    cases = [
        (["--email", "A@ACME.example.com", "--name", "Again"], "already exists"),
        (["--email", "not-an-email", "--name", "X"], "email is not valid"),
        (["--email", "b@acme.example.com", "--name", "X", "--credits", "-5"], "cannot be negative"),
        (
            ["--email", "b@acme.example.com", "--name", "X", "--credits", "0.0000001"],
            "6 decimal places",
        ),
        (["--email", "b@acme.example.com", "--name", "X", "--credits", "lots"], "decimal number"),
    ]
    for args, message in cases:
        refused = CliRunner().invoke(main, ["customers", "create", *args])
        assert refused.exit_code == 1, args
        assert message in refused.output, refused.output
        assert "Traceback" not in refused.output
    assert run("ledger", "verify").exit_code == 0
    # Only the first customer exists: the failed b@ attempts wrote nothing.
    again = CliRunner().invoke(
        main, ["customers", "create", "--email", "b@acme.example.com", "--name", "B", "--json"]
    )
    assert again.exit_code == 0


def test_unknown_customer_balance(sqlite_engine: Engine) -> None:
    refused = CliRunner().invoke(main, ["customers", "balance", "cus_nope", "--json"])
    assert refused.exit_code == 1
    assert "customer not found" in refused.output


def test_demo_is_safe_to_run_again(sqlite_engine: Engine) -> None:
    first = run("demo")
    assert first.exit_code == 0 and "admin@example.com" in first.output and "sk-cd-" in first.output
    second = run("demo")
    assert second.exit_code == 0 and "kept" in second.output
    assert "not seeded" in run("demo", "--if-empty").output
    assert run("ledger", "verify").exit_code == 0


def test_grant_and_keys(sqlite_engine: Engine) -> None:
    customer_id = json.loads(
        run("customers", "create", "--email", "g@g.example.com", "--name", "G", "--json").output
    )["customer_id"]
    assert (
        run(
            "customers",
            "grant",
            customer_id,
            "--credits",
            "3",
            "--reason",
            "goodwill",
            "--idempotency-key",
            "g1",
        ).exit_code
        == 0
    )
    assert (
        run(
            "customers",
            "grant",
            customer_id,
            "--credits",
            "3",
            "--reason",
            "goodwill",
            "--idempotency-key",
            "g1",
        ).exit_code
        == 0
    )
    conflict = CliRunner().invoke(
        main,
        [
            "customers",
            "grant",
            customer_id,
            "--credits",
            "4",
            "--reason",
            "x",
            "--idempotency-key",
            "g1",
        ],
    )
    assert conflict.exit_code == 1 and "already used" in conflict.output
    assert (
        json.loads(run("customers", "balance", customer_id, "--json").output)["balance"]
        == "3.000000"
    )

    key = json.loads(
        run("keys", "create", "--customer", customer_id, "--name", "ci", "--json").output
    )
    assert run("keys", "revoke", "--customer", customer_id, key["key_id"]).exit_code == 0
    missing = CliRunner().invoke(main, ["keys", "revoke", "--customer", customer_id, "key_nope"])
    assert missing.exit_code == 1 and "not found" in missing.output


def test_ledger_verify_fails_on_a_broken_ledger(sqlite_engine: Engine) -> None:
    from sqlalchemy import text

    from creditdash import db

    run("customers", "create", "--email", "v@v.example.com", "--name", "V", "--credits", "1")
    with db.session_scope(engine=sqlite_engine) as session:
        session.execute(
            text("UPDATE ledger_accounts SET debits_posted = debits_posted + 7 WHERE kind = :k"),
            {"k": "platform"},
        )
    broken = CliRunner().invoke(main, ["ledger", "verify"])
    assert broken.exit_code == 1
    assert "violated" in broken.output


def test_unmigrated_database_gets_a_clear_error(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from creditdash import db, settings

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
