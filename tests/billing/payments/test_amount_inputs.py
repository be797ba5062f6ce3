"""Money typed at the command line: plain ASCII digits only, refused before anything is written."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from creditdash.billing.models import Transfer
from creditdash.billing.payments.models import PaymentOrder, Refund
from creditdash.cli import main
from creditdash.core import db
from creditdash.core.audit import AuditEntry
from tests.billing.shop import Shop, session_event
from tests.core.test_money import EXOTIC
from tests.factories import funded_customer


def _rows(engine: Engine) -> tuple[int, ...]:
    with db.session_scope(engine=engine, readonly=True) as session:
        return tuple(
            int(session.execute(select(func.count()).select_from(model)).scalar_one())
            for model in (Transfer, Refund, AuditEntry, PaymentOrder)
        )


def test_refund_amount_takes_plain_digits_only(shop: Shop) -> None:
    order = shop.order("Growth")
    assert shop.post_event(session_event(order)).json()["outcome"] == "credited"
    admin = shop.checker.label.removeprefix("user:")
    base = ["orders", "refund", order.id, "--reason", "r", "--admin", admin]
    before = _rows(shop.engine)
    for n, amount in enumerate(EXOTIC):
        refused = CliRunner().invoke(main, [*base, "--amount", amount, "--refund-id", f"x-{n}"])
        assert refused.exit_code == 1, (amount, refused.output)
        assert "error: --amount must be a decimal amount written with plain digits" in (
            refused.output
        ), amount
    negative = CliRunner().invoke(main, [*base, "--amount", "-5", "--refund-id", "neg"])
    assert negative.exit_code == 1 and "--amount cannot be negative" in negative.output
    assert _rows(shop.engine) == before
    done = CliRunner().invoke(main, [*base, "--amount", "5", "--refund-id", "ok", "--json"])
    assert done.exit_code == 0, done.output
    assert '"amount": "5.00"' in done.output


def test_grant_credits_takes_plain_digits_only(engine: Engine) -> None:
    who = funded_customer(engine, credits_micros=0)
    base = ["customers", "grant", who.customer_id, "--reason", "r"]
    before = _rows(engine)
    for n, credits in enumerate(EXOTIC):
        refused = CliRunner().invoke(
            main, [*base, "--credits", credits, "--idempotency-key", f"{n}"]
        )
        assert refused.exit_code == 1, (credits, refused.output)
        assert "error: --credits must be a decimal number of credits written with plain" in (
            refused.output
        ), credits
    assert _rows(engine) == before
    for n, credits in enumerate(["5", "5.25", "0.000001"]):
        granted = CliRunner().invoke(
            main, [*base, "--credits", credits, "--idempotency-key", f"ok{n}"]
        )
        assert granted.exit_code == 0, granted.output
    shown = CliRunner().invoke(main, ["customers", "balance", who.customer_id, "--json"])
    assert '"balance": "10.250001"' in shown.output
