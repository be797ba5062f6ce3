"""Every report of spend agrees with the ledger: what a request charged is its price_micros, the
sum of its usage debits. The part a short balance could not cover (unbilled_micros) was never
charged and is not subtracted again; operators see it in a column of its own."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from creditdash.accounts.api_keys import create_api_key
from creditdash.billing import ledger, metering, usage
from creditdash.billing.invoicing import statements
from creditdash.billing.models import Transfer, UsageEntry, UsageRecord
from creditdash.billing.payments.verify import verify_payments
from creditdash.core import db
from creditdash.core.money import parse_credits
from creditdash.core.numbers import credits_text
from creditdash.core.timeutil import utcnow
from creditdash.state.admin import requests as admin_requests
from creditdash.state.portal import overview
from creditdash.state.portal import usage as usage_state
from creditdash.web import documents as routes
from tests.factories import funded_customer

CREDIT = 1_000_000


@dataclass(frozen=True)
class Settled:
    customer_id: str
    account_id: int
    request_ids: list[str]


# (model, hold, price): a plain charge, an overage the balance covers, an excess far beyond the
# balance (unbilled), a request without a hold the short balance cannot pay at all (unbilled),
# and a small one after.
_REQUESTS = [
    ("alpha", CREDIT, 400_000),
    ("beta", CREDIT, CREDIT + 250_000),
    ("alpha", 500_000, 100_000 * CREDIT),
    ("beta", 0, 2 * CREDIT),
    ("alpha", 100_000, 99_999),
]


def _settle_some(engine: Engine) -> Settled:
    who = funded_customer(engine, credits_micros=3 * CREDIT)
    with db.session_scope() as session:
        key, _raw = create_api_key(session, customer_id=who.customer_id, name="k")
        key_id = key.id
    ids = []
    for n, (model, hold_micros, price) in enumerate(_REQUESTS):
        request_id = f"req_f{n}_{who.customer_id}"
        ids.append(request_id)
        with db.session_scope() as session:
            hold = metering.reserve(
                session,
                request_id=request_id,
                account_id=who.account_id,
                amount_micros=hold_micros,
                ttl=timedelta(minutes=5),
            )
            metering.settle(
                session,
                hold_id=hold,
                account_id=who.account_id,
                price_micros=price,
                record=UsageEntry(
                    id=request_id,
                    customer_id=who.customer_id,
                    api_key_id=key_id,
                    endpoint="chat.completions",
                    public_model=model,
                    status="ok",
                    usage_source="provider",
                    prompt_tokens=10,
                    completion_tokens=5,
                ),
            )
    return Settled(who.customer_id, who.account_id, ids)


def _ledger_usage_debits(account_id: int) -> int:
    """The customer's posted usage and usage_overage debits: what usage actually charged."""
    with db.session_scope(readonly=True) as session:
        total = session.execute(
            select(func.coalesce(func.sum(col(Transfer.amount_micros)), 0)).where(
                col(Transfer.debit_account_id) == account_id,
                col(Transfer.code).in_((metering.USAGE_CODE, metering.OVERAGE_CODE)),
                col(Transfer.kind).in_(("single", "post")),
            )
        ).scalar_one()
    return int(total)


def _csv_column(text: str, name: str) -> list[int]:
    return [parse_credits(row[name], field=name) for row in csv.DictReader(io.StringIO(text))]


def test_every_report_matches_the_ledger_when_some_requests_are_unbilled(engine: Engine) -> None:
    settled = _settle_some(engine)
    other = _settle_some(engine)  # a second customer: the admin views see both
    charged = _ledger_usage_debits(settled.account_id)
    everyone = charged + _ledger_usage_debits(other.account_id)
    assert charged == 400_000 + 1_250_000 + 500_000 + 0 + 99_999
    today = utcnow().date()

    with db.session_scope(readonly=True) as session:
        records, _total = usage.list_requests(
            session, customer_id=settled.customer_id, filters=usage.RequestFilters()
        )
        unbilled = sum(r.unbilled_micros for r in records)
        totals = usage.spend_totals(session, customer_id=settled.customer_id)
        points = usage.daily_usage(
            session, customer_id=settled.customer_id, first_day=today, last_day=today
        )
        [margin] = usage.daily_margin(session, first_day=today, last_day=today)
        period = statements.Period.of_days(today, today)
        customer_csv = statements.request_log_csv(
            session, customer_id=settled.customer_id, period=period
        )
    # The scenario really has unbilled requests, else this test proves nothing.
    assert unbilled == (100_000 * CREDIT - 500_000) + 2 * CREDIT
    assert sum(usage.charged_micros(r) for r in records) == charged
    for record in records:
        # Its own debits: the post of its hold and any overage transfer (referenced by its id).
        own = col(Transfer.reference) == record.id
        if record.hold_id is not None:
            own = own | (col(Transfer.pending_id) == record.hold_id)
        with db.session_scope(readonly=True) as session:
            debits = session.execute(
                select(func.coalesce(func.sum(col(Transfer.amount_micros)), 0)).where(
                    own,
                    col(Transfer.debit_account_id) == settled.account_id,
                    col(Transfer.kind).in_(("single", "post")),
                    col(Transfer.code).in_((metering.USAGE_CODE, metering.OVERAGE_CODE)),
                )
            ).scalar_one()
        assert usage.charged_micros(record) == int(debits) >= 0, record.id

    # Usage service: totals, the daily series per model, the admin daily margin.
    assert totals.today_micros == totals.month_micros == charged
    assert sum(p.spend_micros for p in points) == charged
    assert margin.revenue_micros == everyone
    assert margin.unbilled_micros == 2 * unbilled
    # The customer's request-log CSV: cost is what was charged, no unbilled column.
    assert sum(_csv_column(customer_csv, "cost")) == charged
    assert "unbilled" not in customer_csv.splitlines()[0]

    # The portal: the request table, one request's detail, the overview cards and chart.
    rows, _n, _models, _keys = usage_state._page(
        settled.customer_id, usage.RequestFilters(), page=1
    )
    # Each row shows its charge rounded for reading (core/numbers.py); the detail is exact.
    by_id = {record.id: usage.charged_micros(record) for record in records}
    assert sorted(r["cost"] for r in rows) == sorted(credits_text(m) for m in by_id.values())
    details = [usage_state._detail(settled.customer_id, rid) for rid in settled.request_ids]
    assert sum(parse_credits(d["cost"], field="cost") for d in details) == charged
    snapshot = overview._snapshot(settled.customer_id)
    # The cards round for reading (core/numbers.py).
    assert snapshot.today == snapshot.month == credits_text(charged)
    series = overview._series(settled.customer_id, 7)
    assert sum(parse_credits(p["spend"], field="spend") for p in series) == charged

    # The admin requests page: the table (with its unbilled column), the chart, the CSV.
    table, total, chart = admin_requests._requests("", "", "", 1)
    assert total == 2 * len(_REQUESTS)
    # Rows show their figures rounded for reading (core/numbers.py): each is its own record's.
    with db.session_scope(readonly=True) as session:
        stored = {r.id: r for r in session.execute(select(UsageRecord)).scalars()}
    shown = [stored[r["id"]] for r in table]
    assert sum(usage.charged_micros(r) for r in shown) == everyone
    assert sum(r.unbilled_micros for r in shown) == 2 * unbilled
    for row in table:
        record = stored[row["id"]]
        assert row["cost"] == credits_text(usage.charged_micros(record))
        assert row["unbilled"] == credits_text(record.unbilled_micros)
    [point] = chart
    assert point["revenue"] == everyone / 1e6 and point["unbilled"] == 2 * unbilled / 1e6
    mine, _t, _c = admin_requests._requests(settled.customer_id, "", "", 1)
    assert sum(usage.charged_micros(stored[r["id"]]) for r in mine) == charged
    assert all(stored[r["id"]].customer_id == settled.customer_id for r in mine)
    admin_csv = routes._all_requests(None, statements.Period.of_days(today, today))
    assert sum(_csv_column(admin_csv, "cost")) == everyone
    assert sum(_csv_column(admin_csv, "unbilled")) == 2 * unbilled
    assert {row["customer_id"] for row in csv.DictReader(io.StringIO(admin_csv))} == {
        settled.customer_id,
        other.customer_id,
    }

    # No figure anywhere is negative, and the ledger itself is consistent.
    assert all(not r["cost"].startswith("-") for r in table)
    with db.session_scope(readonly=True) as session:
        assert ledger.verify(session) + verify_payments(session) == []
