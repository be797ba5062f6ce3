"""What the gateway charges when an upstream misreports or a request tries to outgrow its hold.

Each test here failed on the code before its fix (issue 22's adversarial pass): output beyond
the cap the upstream was sent, two output caps, usage beyond 64-bit micros, a settlement that
fails, media parts the hold did not count, a stream closed without its end marker, a hold
lifetime too short for its request.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import orjson
import pydantic
import pytest
from sqlalchemy import select

from creditdash.accounts.api_keys import KeyLimits, create_api_key
from creditdash.billing import metering
from creditdash.billing.hotpath import HotLedger
from creditdash.billing.invoicing import statements
from creditdash.billing.models import Transfer
from creditdash.catalog.prices import worst_case_micros
from creditdash.core import db
from creditdash.core.settings import Settings
from creditdash.core.timeutil import utcnow
from creditdash.proxy.gateway import Gateway
from creditdash.proxy.tokens import hold_prompt_tokens
from tests.proxy.conftest import GatewayRig
from tests.proxy.test_gateway import (
    MESSAGES,
    PRICE,
    assert_ledger_ok,
    balance,
    micros,
    record,
)


def _hold_of(rig: GatewayRig, request_id: str) -> int:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        hold = session.execute(
            select(Transfer).where(Transfer.reference == request_id, Transfer.kind == "pending")
        ).scalar_one()
        return hold.amount_micros


def _events(lines: list[str]) -> list[Any]:
    return [
        line[6:] if line[6:] == "[DONE]" else json.loads(line[6:])
        for line in lines
        if line.startswith("data: ")
    ]


def _stream(rig: GatewayRig, body: dict[str, Any]) -> tuple[str, list[Any]]:
    with rig.http().stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        return response.headers["x-request-id"], _events(list(response.iter_lines()))


# ------------------------------------------------------------------ output beyond the cap


def test_output_beyond_the_cap_sent_is_charged_at_the_cap_and_recorded_as_disputed(
    rig_any_backend: GatewayRig,
) -> None:
    rig = rig_any_backend
    before = balance(rig)
    raw = rig.client().chat.completions.with_raw_response.create(
        model="overclaim", messages=MESSAGES, max_tokens=10
    )
    reply = raw.parse()
    stored = record(rig, raw.headers["x-request-id"])
    # 11 prompt tokens at 1 micro, 10 output tokens (the cap) at 2 micros; not 100,000 of them.
    assert stored.price_micros == 11 + 2 * 10
    assert (stored.completion_tokens, stored.disputed_completion_tokens) == (10, 99_990)
    assert stored.unbilled_micros == 0
    assert reply.usage is not None and reply.usage.completion_tokens == 10
    assert micros(reply.usage.model_extra["cost"]) == 31
    assert before.posted_micros - balance(rig).posted_micros == 31
    # Operators see the dispute in the admin export.
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        today = utcnow().date()
        exported = statements.request_log_csv(
            session, customer_id=None, period=statements.Period.of_days(today, today), operator=True
        )
    row = next(r for r in csv.DictReader(io.StringIO(exported)) if r["request_id"] == stored.id)
    assert row["disputed_completion_tokens"] == "99990"
    assert_ledger_ok(rig)


def test_streamed_output_beyond_the_cap_is_bounded_too(rig_any_backend: GatewayRig) -> None:
    rig = rig_any_backend
    body = {
        "model": "overclaim",
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": 10,
        "n": 2,
        "stream_options": {"include_usage": True},
    }
    request_id, events = _stream(rig, body)
    assert events[-1] == "[DONE]"
    usage = events[-2]["usage"]
    assert usage["completion_tokens"] == 20  # the cap times n
    stored = record(rig, request_id)
    assert stored.price_micros == 11 + 2 * 20
    assert stored.disputed_completion_tokens == 100_000 - 20
    assert_ledger_ok(rig)


def test_one_request_never_takes_a_capped_key_past_its_cap(rig_any_backend: GatewayRig) -> None:
    rig = rig_any_backend
    with db.session_scope(engine=rig.engine) as session:
        _key, capped = create_api_key(
            session,
            customer_id=rig.customer_id,
            name="capped",
            limits=KeyLimits(monthly_spend_cap_micros=1_000_000),
        )
    # The upstream reports 5M prompt tokens (5 credits) for a request held for a few micros.
    raw = rig.client(capped).chat.completions.with_raw_response.create(
        model="largeprompt", messages=MESSAGES
    )
    stored = record(rig, raw.headers["x-request-id"])
    hold = _hold_of(rig, stored.id)
    assert stored.price_micros == hold < 1_000_000
    assert stored.unbilled_micros == 5_000_000 + 14 - hold
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        spent = metering.key_spend_since(
            session, api_key_id=stored.api_key_id, since=metering.month_start()
        )
    assert spent <= 1_000_000
    assert_ledger_ok(rig)


def test_an_uncapped_key_still_pays_an_overage_its_balance_covers(rig: GatewayRig) -> None:
    raw = rig.client().chat.completions.with_raw_response.create(
        model="largeprompt", messages=MESSAGES
    )
    stored = record(rig, raw.headers["x-request-id"])
    assert (stored.price_micros, stored.unbilled_micros) == (5_000_000 + 14, 0)
    assert_ledger_ok(rig)


# ---------------------------------------------------------------------------- two caps


def test_exactly_one_output_cap_goes_upstream_and_it_is_the_one_held(
    rig_any_backend: GatewayRig,
) -> None:
    rig = rig_any_backend
    before = rig.upstream.count()
    body = {"model": "chat", "messages": MESSAGES, "max_completion_tokens": 5, "max_tokens": 1000}
    with rig.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    sent = rig.upstream.seen[before].body
    assert sent["max_completion_tokens"] == 5
    assert "max_tokens" not in sent
    held = _hold_of(rig, response.headers["x-request-id"])
    expected = worst_case_micros(
        PRICE, prompt_tokens=hold_prompt_tokens(orjson.dumps(body)), max_output_tokens=5
    )
    # The body the gateway read is the client's bytes; orjson writes the same compact form.
    assert held == expected

    # The smaller cap wins whichever field holds it; max_tokens alone stays max_tokens.
    body = {"model": "chat", "messages": MESSAGES, "max_completion_tokens": 50, "max_tokens": 3}
    rig.http().post("/v1/chat/completions", json=body)
    sent = rig.upstream.seen[before + 1].body
    assert (sent["max_completion_tokens"], "max_tokens" in sent) == (3, False)
    rig.http().post(
        "/v1/completions",
        json={"model": "chat", "prompt": "Hi", "max_completion_tokens": 4, "max_tokens": 9},
    )
    sent = rig.upstream.seen[before + 2].body
    assert (sent["max_tokens"], "max_completion_tokens" in sent) == (4, False)
    assert_ledger_ok(rig)


# ----------------------------------------------------------------- usage beyond 64 bits


@pytest.mark.parametrize("stream", [False, True])
def test_usage_beyond_any_real_count_is_invalid_usage_and_estimated(
    rig_any_backend: GatewayRig, stream: bool
) -> None:
    rig = rig_any_backend
    if stream:
        request_id, events = _stream(
            rig,
            {
                "model": "overflow",
                "messages": MESSAGES,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
        assert events[-1] == "[DONE]"
        assert events[-2]["usage"]["estimated"] is True
    else:
        raw = rig.client().chat.completions.with_raw_response.create(
            model="overflow", messages=MESSAGES
        )
        request_id = raw.headers["x-request-id"]
        assert raw.parse().usage.model_extra["estimated"] is True
    stored = record(rig, request_id)
    assert (stored.status, stored.usage_source) == ("ok", "estimated")
    assert 0 < stored.price_micros < 1_000
    assert balance(rig).held_micros == 0
    assert_ledger_ok(rig)


# -------------------------------------------------------------- a settlement that fails


@pytest.fixture
def broken_settlement(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("settlement exploded")

    monkeypatch.setattr(HotLedger, "settle", fail)
    monkeypatch.setattr(metering, "settle", fail)


@pytest.mark.usefixtures("broken_settlement")
def test_a_failed_settlement_voids_the_hold_and_records_the_request(
    rig_any_backend: GatewayRig,
) -> None:
    rig = rig_any_backend
    before = balance(rig)
    with rig.http() as http:
        response = http.post("/v1/chat/completions", json={"model": "chat", "messages": MESSAGES})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "metering_failed"
    stored = record(rig, response.headers["x-request-id"])
    assert (stored.status, stored.price_micros, stored.usage_source) == (
        "settlement_failed",
        0,
        "none",
    )
    assert balance(rig) == before  # nothing charged, nothing left held
    assert_ledger_ok(rig)


@pytest.mark.usefixtures("broken_settlement")
def test_a_failed_settlement_of_a_stream_ends_it_with_an_error(rig: GatewayRig) -> None:
    request_id, events = _stream(rig, {"model": "chat", "messages": MESSAGES, "stream": True})
    assert "[DONE]" not in events
    assert events[-1]["error"]["code"] == "metering_failed"
    assert record(rig, request_id).status == "settlement_failed"
    assert balance(rig).held_micros == 0
    assert_ledger_ok(rig)


# ------------------------------------------------------------------------ media parts


def _image(n: int) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "What is in these?"}]
    parts += [
        {"type": "image_url", "image_url": {"url": f"https://img.test/{i}.png"}} for i in range(n)
    ]
    return [{"role": "user", "content": parts}]


def test_each_image_part_is_held_as_the_models_media_tokens(rig_any_backend: GatewayRig) -> None:
    rig = rig_any_backend
    body = {"model": "chat", "messages": _image(3), "max_tokens": 10}
    with rig.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    held = _hold_of(rig, response.headers["x-request-id"])
    prompt = hold_prompt_tokens(orjson.dumps(body)) + 3 * 3000
    assert held == worst_case_micros(PRICE, prompt_tokens=prompt, max_output_tokens=10)
    assert_ledger_ok(rig)


def test_more_media_parts_than_the_model_takes_are_refused_before_anything_runs(
    rig: GatewayRig,
) -> None:
    before = rig.upstream.count()
    with rig.http() as http:
        many = http.post("/v1/chat/completions", json={"model": "chat", "messages": _image(17)})
        by_id = http.post(
            "/v1/chat/completions",
            json={
                "model": "chat",
                "messages": [
                    {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}
                ],
            },
        )
    assert many.status_code == 400
    assert many.json()["error"]["code"] == "too_many_media_parts"
    assert "at most 16" in many.json()["error"]["message"]
    assert by_id.status_code == 400
    assert by_id.json()["error"]["code"] == "unsupported_file_reference"
    assert rig.upstream.count() == before
    assert balance(rig).held_micros == 0


# ----------------------------------------------------------- a stream without [DONE]


def test_a_stream_closed_without_its_end_marker_ends_with_an_error_and_is_incomplete(
    rig_any_backend: GatewayRig,
) -> None:
    rig = rig_any_backend
    request_id, events = _stream(
        rig,
        {
            "model": "nodone",
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert "[DONE]" not in events
    assert events[-1]["error"]["code"] == "upstream_incomplete"
    text = "".join(e["choices"][0]["delta"]["content"] for e in events[:-1] if e.get("choices"))
    assert text == "Hello from the fake upstream."
    stored = record(rig, request_id)
    assert stored.status == "upstream_incomplete"
    # What was produced and delivered is charged, from the upstream's own count.
    assert (stored.usage_source, stored.price_micros) == ("provider", 11 + 2 * 7)
    assert balance(rig).held_micros == 0
    assert_ledger_ok(rig)


# ------------------------------------------------------------------ hold lifetime


def test_a_hold_lifetime_a_request_could_outlive_is_refused_at_start() -> None:
    with pytest.raises(pydantic.ValidationError, match="at least 90 seconds"):
        Settings(hold_ttl_s=89)
    gateway = Gateway(Settings(hold_ttl_s=90))
    assert gateway.request_budget_s == 30
    assert gateway.request_budget_s < gateway.hold_ttl.total_seconds()
