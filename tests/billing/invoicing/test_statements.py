"""Statements reconcile: opening + credits - debits = closing, with usage named by request."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

from click.testing import CliRunner

from creditdash.accounts.api_keys import create_api_key
from creditdash.billing import adjustments, ledger, metering
from creditdash.billing.invoicing import statements
from creditdash.billing.models import UsageEntry
from creditdash.billing.payments import refunds
from creditdash.cli import main
from creditdash.core import db
from creditdash.core.audit import CLI
from creditdash.core.timeutil import utcnow
from tests.billing.shop import Shop, session_event


def _use(shop: Shop, request_id: str, held: int, price: int, key_id: str) -> None:
    with db.session_scope() as session:
        hold_id = metering.reserve(
            session,
            request_id=request_id,
            account_id=shop.account_id,
            amount_micros=held,
            ttl=timedelta(minutes=5),
        )
    entry = UsageEntry(
        id=request_id,
        customer_id=shop.customer_id,
        api_key_id=key_id,
        endpoint="chat.completions",
        public_model="gpt-4o-mini",
        status="ok",
        usage_source="provider",
        provider="sandbox",
        upstream_model="sandbox-chat",
        http_status=200,
        prompt_tokens=120,
        completion_tokens=40,
    )
    with db.session_scope() as session:
        metering.settle(
            session, hold_id=hold_id, account_id=shop.account_id, price_micros=price, record=entry
        )


def _activity(shop: Shop) -> None:
    with db.session_scope() as session:
        adjustments.grant_credits(
            session,
            customer_id=shop.customer_id,
            amount_micros=5_000_000,
            reason="welcome",
            actor=CLI,
            idempotency_key="st-grant",
        )
        key, _raw = create_api_key(session, customer_id=shop.customer_id, name="st")
        key_id = key.id
    order = shop.order("Growth")
    shop.post_event(session_event(order))
    _use(shop, "req_st_1", 2_000_000, 1_234_567, key_id)
    _use(shop, "req_st_2", 2_000_000, 765_433, key_id)
    refunds.refund_order(order.id, amount_minor=1000, refund_id="st-r", actor=CLI, reason="x")


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_statement_reconciles_and_names_usage(shop: Shop) -> None:
    _activity(shop)
    today = utcnow().date()
    with db.session_scope(readonly=True) as session:
        rows = statements.statement(
            session,
            customer_id=shop.customer_id,
            period=statements.Period.of_days(today - timedelta(days=1), today),
        )
        posted = ledger.get_balance(session, shop.account_id).posted_micros
        text = statements.statement_csv(rows)
    parsed = _rows(text)
    assert list(parsed[0]) == list(statements.STATEMENT_HEADER)
    assert parsed[0]["type"] == "opening" and parsed[-1]["type"] == "closing"
    assert [r["type"] for r in parsed[1:-1]] == [
        "grant",
        "topup",
        "bonus",
        "usage",
        "usage",
        "refund",
    ]
    opening = Decimal(parsed[0]["balance_after"])
    closing = Decimal(parsed[-1]["balance_after"])
    movements = sum(Decimal(r["amount"]) for r in parsed[1:-1])
    assert opening + movements == closing == Decimal(posted) / 1_000_000
    usage = [r for r in parsed if r["type"] == "usage"]
    assert [r["reference"] for r in usage] == ["req_st_1", "req_st_2"]
    assert usage[0]["amount"] == "-1.234567" and "gpt-4o-mini" in usage[0]["description"]
    running = opening
    for row in parsed[1:-1]:
        running += Decimal(row["amount"])
        assert Decimal(row["balance_after"]) == running


def test_opening_balance_carries_over(shop: Shop) -> None:
    _activity(shop)
    tomorrow = utcnow().date() + timedelta(days=1)
    with db.session_scope(readonly=True) as session:
        later = statements.statement(
            session,
            customer_id=shop.customer_id,
            period=statements.Period.of_days(tomorrow, tomorrow + timedelta(days=30)),
        )
        earlier = statements.statement(
            session,
            customer_id=shop.customer_id,
            period=statements.Period.of_days(
                tomorrow - timedelta(days=400), tomorrow - timedelta(days=100)
            ),
        )
        posted = ledger.get_balance(session, shop.account_id).posted_micros
    assert [r.type for r in later] == ["opening", "closing"]
    assert later[0].balance_after_micros == later[-1].balance_after_micros == posted
    assert earlier[0].balance_after_micros == earlier[-1].balance_after_micros == 0


def test_request_log_and_cli_export(shop: Shop, tmp_path: object) -> None:
    from pathlib import Path

    _activity(shop)
    today = utcnow().date().isoformat()
    out = Path(str(tmp_path)) / "requests.csv"
    done = CliRunner().invoke(
        main,
        [
            "statements",
            "export",
            "--customer",
            shop.customer_id,
            "--from",
            today,
            "--to",
            today,
            "--out",
            str(out),
            "--kind",
            "requests",
        ],
    )
    assert done.exit_code == 0, done.output
    rows = _rows(out.read_text())
    assert [r["request_id"] for r in rows] == ["req_st_1", "req_st_2"]
    assert rows[0]["cost"] == "1.234567" and rows[0]["model"] == "gpt-4o-mini"
    ledger_out = Path(str(tmp_path)) / "ledger.csv"
    done = CliRunner().invoke(
        main,
        [
            "statements",
            "export",
            "--customer",
            shop.customer_id,
            "--from",
            today,
            "--to",
            today,
            "--out",
            str(ledger_out),
        ],
    )
    assert done.exit_code == 0 and _rows(ledger_out.read_text())[-1]["type"] == "closing"
    bad = CliRunner().invoke(
        main,
        [
            "statements",
            "export",
            "--customer",
            shop.customer_id,
            "--from",
            today,
            "--to",
            "2020-01-01",
            "--out",
            str(ledger_out),
        ],
    )
    assert bad.exit_code == 1 and "ends before it starts" in bad.output


def test_csv_cells_cannot_become_formulas(shop: Shop) -> None:
    with db.session_scope() as session:
        adjustments.grant_credits(
            session,
            customer_id=shop.customer_id,
            amount_micros=1_000_000,
            reason='=HYPERLINK("http://evil.invalid","x")',
            actor=CLI,
            idempotency_key="csv-1",
        )
        adjustments.debit_credits(
            session,
            customer_id=shop.customer_id,
            amount_micros=500_000,
            reason="+1 correction",
            actor=CLI,
            idempotency_key="csv-2",
        )
    today = utcnow().date()
    with db.session_scope(readonly=True) as session:
        text = statements.statement_csv(
            statements.statement(
                session,
                customer_id=shop.customer_id,
                period=statements.Period.of_days(today, today),
            )
        )
    rows = _rows(text)
    descriptions = [r["description"] for r in rows]
    assert '\'=HYPERLINK("http://evil.invalid","x")' in descriptions
    assert "'+1 correction" in descriptions
    assert [r["amount"] for r in rows if r["type"] == "adjustment"] == ["-0.500000"]
