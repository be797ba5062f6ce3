"""Usage read back for the portal: totals, daily series, paged and filtered request log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from creditdash.accounts.api_keys import create_api_key
from creditdash.billing import metering, usage
from creditdash.billing.models import UsageEntry, UsageRecord
from creditdash.core import db
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.timeutil import utcnow
from tests.factories import funded_customer


def _requests(engine: Engine, count: int) -> tuple[str, str]:
    who = funded_customer(engine, credits_micros=100_000_000)
    with db.session_scope() as session:
        key, _raw = create_api_key(session, customer_id=who.customer_id, name="k")
    for n in range(count):
        with db.session_scope() as session:
            hold = metering.reserve(
                session,
                request_id=f"req_u{n}_{who.customer_id}",
                account_id=who.account_id,
                amount_micros=1_000_000,
                ttl=timedelta(minutes=5),
            )
            entry = UsageEntry(
                id=f"req_u{n}_{who.customer_id}",
                customer_id=who.customer_id,
                api_key_id=key.id,
                endpoint="chat.completions",
                public_model="alpha" if n % 2 == 0 else "beta",
                status="ok" if n % 3 else "upstream_error",
                usage_source="provider",
                prompt_tokens=10,
                completion_tokens=5,
            )
            metering.settle(
                session, hold_id=hold, account_id=who.account_id, price_micros=100 + n, record=entry
            )
    return who.customer_id, key.id


def test_totals_and_daily_series(engine: Engine) -> None:
    customer_id, _key = _requests(engine, 5)
    with db.session_scope(readonly=True) as session:
        totals = usage.spend_totals(session, customer_id=customer_id)
        today = utcnow().date()
        points = usage.daily_usage(
            session, customer_id=customer_id, first_day=today - timedelta(days=6), last_day=today
        )
    assert totals.today_micros == totals.month_micros == sum(100 + n for n in range(5))
    assert totals.requests_today == 5
    assert [(p.day, p.model, p.requests) for p in points] == [
        (today, "alpha", 3),
        (today, "beta", 2),
    ]
    assert sum(p.spend_micros for p in points) == totals.today_micros
    assert points[0].prompt_tokens == 30


def test_request_log_pages_and_filters(engine: Engine) -> None:
    customer_id, key_id = _requests(engine, 7)
    other_id, _ = _requests(engine, 2)
    with db.session_scope(readonly=True) as session:
        first, total = usage.list_requests(
            session, customer_id=customer_id, filters=usage.RequestFilters(), page=1, page_size=3
        )
        third, _ = usage.list_requests(
            session, customer_id=customer_id, filters=usage.RequestFilters(), page=3, page_size=3
        )
        alpha, alpha_total = usage.list_requests(
            session, customer_id=customer_id, filters=usage.RequestFilters(model="alpha")
        )
        failed, failed_total = usage.list_requests(
            session,
            customer_id=customer_id,
            filters=usage.RequestFilters(status="upstream_error", api_key_id=key_id),
        )
        with pytest.raises(ValidationFailed):
            usage.list_requests(
                session, customer_id=customer_id, filters=usage.RequestFilters(), page_size=1000
            )
        with pytest.raises(NotFound):
            usage.get_request(session, customer_id=other_id, request_id=first[0].id)
    assert total == 7 and len(first) == 3 and len(third) == 1
    assert alpha_total == 4 and {r.public_model for r in alpha} == {"alpha"}
    assert failed_total == 3
    assert all(r.customer_id == customer_id for r in first + third + alpha + failed)


def test_daily_margin_across_customers(engine: Engine) -> None:
    _requests(engine, 3)
    _requests(engine, 2)
    today = utcnow().date()
    with db.session_scope(readonly=True) as session:
        [day] = usage.daily_margin(session, first_day=today, last_day=today)
        _rows, everyone = usage.list_requests(
            session, customer_id=None, filters=usage.RequestFilters()
        )
    assert day.requests == everyone == 5
    assert day.revenue_micros == sum(100 + n for n in range(3)) + sum(100 + n for n in range(2))
    assert day.margin_micros == day.revenue_micros - day.cost_micros


@pytest.mark.parametrize(
    ("endpoint", "upstream", "label"),
    [
        ("chat", "chat", "Chat Completions"),
        ("chat", "", "Chat Completions"),
        ("messages", "messages", "Anthropic Messages"),
        ("responses", "chat", "Responses → Chat Completions"),
        ("chat", "messages", "Chat Completions → Anthropic Messages"),
        ("rerank", "chat", "rerank → Chat Completions"),
    ],
)
def test_protocol_label_names_the_client_api_and_a_translation(
    endpoint: str, upstream: str, label: str
) -> None:
    record = UsageRecord(
        id="req_x",
        customer_id="cus_x",
        api_key_id="key_x",
        endpoint=endpoint,
        upstream_endpoint=upstream,
        public_model="m",
        status="ok",
        usage_source="provider",
    )
    assert usage.protocol_label(record) == label
