"""Payment reconciliation: paid sessions whose webhook never arrived are credited once."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from creditdash import jobs
from creditdash.billing.codes import TransferCode
from creditdash.billing.models import Transfer
from creditdash.billing.payments import reconcile
from creditdash.billing.payments.reconcile_models import ReconcileRun
from creditdash.core import db
from creditdash.core.errors import ValidationFailed
from creditdash.core.timeutil import utcnow
from creditdash.web.payments import sandbox_event
from tests.billing.shop import Shop, session_event


def _topups(order_id: str) -> int:
    with db.session_scope(readonly=True) as session:
        return int(
            session.execute(
                select(func.count(Transfer.id)).where(
                    Transfer.reference == order_id, Transfer.code == TransferCode.TOPUP
                )
            ).scalar_one()
        )


def _run(shop: Shop) -> reconcile.Report:
    return reconcile.reconcile(since=utcnow() - timedelta(days=3), trigger="test")


def test_lost_stripe_webhook_is_credited_once_and_the_late_webhook_credits_nothing(
    stripe_shop: Shop,
) -> None:
    shop = stripe_shop
    order = shop.order("Growth")
    assert order.checkout_session_id
    paid = shop.stripe.mark_paid(order.checkout_session_id, payment_intent="pi_lost")
    assert shop.available() == 0

    first = _run(shop)
    assert [c["order_id"] for c in first.credited] == [order.id]
    assert first.sessions_seen == 1 and not first.mismatches and not first.unmatched
    assert shop.available() == 55_000_000
    assert _topups(order.id) == 1
    settled = shop.get(order.id)
    assert settled.status == "paid" and settled.provider_payment_id == "pi_lost"
    # The library read the list through GET /v1/checkout/sessions with created[gte].
    listed = [c for c in shop.stripe.calls if c.method == "GET"]
    assert listed and int(listed[0].params["created"]["gte"]) <= int(paid["created"])

    second = _run(shop)
    assert second.credited == [] and second.already_credited == 1
    assert shop.available() == 55_000_000

    # The webhook arrives after all: 2xx, and nothing more is credited.
    late = shop.post_event(
        session_event(order, payment_intent="pi_lost", event_id="evt_late"), provider="stripe"
    )
    assert late.status_code == 200
    assert late.json()["outcome"] == "already_settled"
    assert shop.available() == 55_000_000
    assert _topups(order.id) == 1
    shop.verify_ledger()


def test_reconcile_reads_every_page(stripe_shop: Shop) -> None:
    shop = stripe_shop
    made = [shop.order("Starter") for _ in range(3)]
    for order in made:
        assert order.checkout_session_id
        shop.stripe.mark_paid(order.checkout_session_id)
    # One more, unpaid: listed by Stripe, not a paid session, left alone.
    unpaid = shop.order("Starter")
    shop.stripe.page_cap = 2
    report = _run(shop)
    pages = [c for c in shop.stripe.calls if c.method == "GET"]
    assert len(pages) == 2 and pages[1].params["starting_after"]
    assert report.sessions_seen == 3
    assert sorted(c["order_id"] for c in report.credited) == sorted(o.id for o in made)
    assert shop.get(unpaid.id).status == "awaiting_payment"
    shop.verify_ledger()


def test_amount_mismatch_is_reported_and_not_credited(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = shop.order("Growth")
    assert order.checkout_session_id
    shop.stripe.mark_paid(order.checkout_session_id, amount_total=order.gross_minor - 1)
    report = _run(shop)
    assert report.credited == []
    [mismatch] = report.mismatches
    assert mismatch["order_id"] == order.id and mismatch["session_id"] == order.checkout_session_id
    assert "not credited" in mismatch["action"]
    assert shop.available() == 0 and shop.get(order.id).status == "awaiting_payment"
    assert _topups(order.id) == 0
    with db.session_scope(readonly=True) as session:
        run = session.get(ReconcileRun, report.run_id)
        assert run is not None and run.mismatches == 1 and run.credited == 0
        assert run.finished_at is not None
        assert json.loads(run.findings_json)["mismatches"][0]["order_id"] == order.id
    shop.verify_ledger()


def test_currency_mismatch_is_reported_and_not_credited(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = shop.order("Growth")
    assert order.checkout_session_id
    shop.stripe.mark_paid(order.checkout_session_id, currency="usd")
    report = _run(shop)
    assert report.credited == [] and len(report.mismatches) == 1
    assert shop.available() == 0


def test_session_without_our_order_is_listed(stripe_shop: Shop) -> None:
    shop = stripe_shop
    order = shop.order("Growth")
    assert order.checkout_session_id
    shop.stripe.sessions[order.checkout_session_id]["client_reference_id"] = "ord_elsewhere"
    shop.stripe.sessions[order.checkout_session_id]["metadata"] = {}
    shop.stripe.mark_paid(order.checkout_session_id)
    report = _run(shop)
    assert report.credited == [] and [u["session_id"] for u in report.unmatched] == [
        order.checkout_session_id
    ]
    assert shop.available() == 0


def test_sandbox_paid_session_is_credited_from_its_own_record(shop: Shop) -> None:
    order = shop.order("Growth")
    # The sandbox page records the payment, then its in-process delivery is lost.
    paid = json.loads(sandbox_event(order))["data"]["object"]
    reconcile.record_sandbox_payment(paid)
    reconcile.record_sandbox_payment(paid)  # a double submit records it once
    report = _run(shop)
    assert [c["order_id"] for c in report.credited] == [order.id]
    assert shop.available() == 55_000_000
    again = _run(shop)
    assert again.credited == [] and again.already_credited == 1
    late = shop.post_event(
        session_event(order, payment_intent=paid["payment_intent"], event_id="evt_sb_late")
    )
    assert late.status_code == 200 and late.json()["outcome"] == "already_settled"
    assert shop.available() == 55_000_000 and _topups(order.id) == 1
    shop.verify_ledger()


def test_sandbox_page_keeps_its_record(shop: Shop) -> None:
    import httpx

    order = shop.order("Growth")
    page = f"{shop.base_url}/sandbox/checkout/{order.checkout_session_id}/pay"
    answer = httpx.post(page, data={"accept_terms": "yes"})
    assert answer.status_code == 303
    assert shop.available() == 55_000_000
    report = _run(shop)
    assert report.sessions_seen == 1 and report.already_credited == 1 and report.credited == []


def test_daily_job_runs_once_per_24_hours(shop: Shop) -> None:
    order = shop.order("Growth")
    reconcile.record_sandbox_payment(json.loads(sandbox_event(order))["data"]["object"])
    assert jobs.reconcile_payments_once() == 1
    assert shop.available() == 55_000_000
    # Again at once (another process, a restart): not due, no run row.
    assert jobs.reconcile_payments_once() == 0
    with db.session_scope() as session:
        runs = list(session.execute(select(ReconcileRun)).scalars())
        assert len(runs) == 1 and runs[0].trigger == "jobs" and runs[0].claim_key
        # A day later it is due again.
        runs[0].started_at = utcnow() - timedelta(hours=25)
        session.add(runs[0])
    assert jobs.reconcile_payments_once() == 0
    with db.session_scope(readonly=True) as session:
        assert session.execute(select(func.count(ReconcileRun.id))).scalar_one() == 2


def test_daily_claim_is_taken_once(shop: Shop) -> None:
    # Two processes that both found the last daily run old insert the same successor key.
    first = reconcile.reconcile(since=utcnow() - timedelta(days=1), trigger="jobs", claim_key="k")
    assert first.run_id
    with pytest.raises(IntegrityError):
        reconcile.reconcile(since=utcnow() - timedelta(days=1), trigger="jobs", claim_key="k")


def test_since_is_checked() -> None:
    now = utcnow()
    assert reconcile.parse_since(None, now=now) == now - timedelta(days=3)
    assert reconcile.parse_since("2026-12-01", now=now.replace(year=2026, month=12, day=5))
    for bad, message in (("yesterday", "is a date"), ("2999-01-01", "future")):
        with pytest.raises(ValidationFailed, match=message):
            reconcile.parse_since(bad, now=now)
    with pytest.raises(ValidationFailed, match="at most 90 days"):
        reconcile.parse_since((now - timedelta(days=91)).date().isoformat(), now=now)


def test_cli_reconcile_json_and_exit_statuses(stripe_shop: Shop) -> None:
    from click.testing import CliRunner

    from creditdash.cli import main

    shop = stripe_shop
    good, bad = shop.order("Growth"), shop.order("Starter")
    assert good.checkout_session_id and bad.checkout_session_id
    shop.stripe.mark_paid(good.checkout_session_id)
    shop.stripe.mark_paid(bad.checkout_session_id, amount_total=1)
    answer = CliRunner().invoke(main, ["payments", "reconcile", "--json"])
    assert answer.exit_code == 3, answer.output
    shown = json.loads(answer.output)
    assert shown["counts"] == {
        "sessions_seen": 2,
        "credited": 1,
        "already_credited": 0,
        "mismatches": 1,
        "unmatched": 0,
    }
    assert shown["credited"][0]["order_id"] == good.id
    assert shown["mismatches"][0]["order_id"] == bad.id
    assert shown["window"]["since"] < shown["window"]["until"]
    last = CliRunner().invoke(main, ["payments", "last-run", "--json"])
    assert last.exit_code == 0 and json.loads(last.output)["run_id"] == shown["run_id"]
    assert shop.available() == 55_000_000

    refused = CliRunner().invoke(main, ["payments", "reconcile", "--since", "soon"])
    assert refused.exit_code == 1 and "is a date" in refused.output


def test_cli_reconcile_exit_1_when_stripe_cannot_be_read(
    stripe_shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from creditdash.cli import main
    from creditdash.core import settings

    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_wrong_key_0123456789abcdef")
    settings.reset_settings()
    answer = CliRunner().invoke(main, ["payments", "reconcile", "--json"])
    assert answer.exit_code == 1
    shown = json.loads(answer.output)
    assert "Stripe did not list" in shown["error"]
    with db.session_scope(readonly=True) as session:
        run = session.get(ReconcileRun, shown["run_id"])
        assert run is not None and run.error and run.finished_at is not None


def test_reconcile_and_the_webhook_together_credit_once(stripe_shop: Shop) -> None:
    from tests.billing.payments.helpers import together

    shop = stripe_shop
    order = shop.order("Growth")
    assert order.checkout_session_id
    shop.stripe.mark_paid(order.checkout_session_id, payment_intent="pi_race")
    event = session_event(order, payment_intent="pi_race", event_id="evt_race")
    webhook, run = together(lambda: shop.post_event(event, provider="stripe"), lambda: _run(shop))
    assert not isinstance(run, Exception), run
    assert getattr(webhook, "status_code", None) == 200
    assert shop.available() == 55_000_000 and _topups(order.id) == 1
    assert isinstance(run, reconcile.Report)
    assert len(run.credited) + run.already_credited == 1
    shop.verify_ledger()
