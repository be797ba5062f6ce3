"""Every ending of docs/contract.md section 7's table, seen through the official openai SDK.

Each test drives one row against the fake upstream on loopback and checks what the client got
(text, error type and code), the charge to the micro, the usage record (status, http_status,
usage_source), that no hold is left and that `ledger verify` is clean.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from creditdash.billing import metering
from creditdash.billing.hotpath import HotLedger
from creditdash.billing.models import UsageRecord
from creditdash.catalog.prices import TokenUsage, cost_micros
from creditdash.core import db
from creditdash.proxy import tokens
from tests.proxy.conftest import UPSTREAM_KEY, GatewayRig
from tests.proxy.fake_upstream import ERROR_200_MESSAGE, TOOL_ARGUMENTS, WORDS
from tests.proxy.test_gateway import (
    FAKE_USAGE,
    MESSAGES,
    PRICE,
    assert_ledger_ok,
    balance,
    micros,
    record,
)

TEXT = "".join(WORDS)
PROMPT_ESTIMATE = tokens.prompt_tokens("chat", {"messages": MESSAGES})


def estimate(text: str) -> int:
    """The price of an estimated request whose client received text."""
    usage = TokenUsage(prompt_tokens=PROMPT_ESTIMATE, completion_tokens=tokens.text_tokens(text))
    return cost_micros(PRICE, usage)


PROVIDER = cost_micros(PRICE, FAKE_USAGE)


class Ended:
    """One request's ending as the client saw it."""

    def __init__(self) -> None:
        self.request_id = ""
        self.text = ""
        self.chunks: list[Any] = []
        self.error: openai.APIError | None = None


def stream(rig: GatewayRig, model: str, **extra: Any) -> Ended:
    ended = Ended()
    try:
        raw = rig.client().chat.completions.with_raw_response.create(
            model=model, messages=MESSAGES, stream=True, **extra
        )
        ended.request_id = raw.headers["x-request-id"]
        for chunk in raw.parse():
            ended.chunks.append(chunk)
            if chunk.choices:
                ended.text += chunk.choices[0].delta.content or ""
    except openai.APIStatusError as failed:
        ended.request_id = failed.response.headers["x-request-id"]
        ended.error = failed
    except openai.APIError as failed:  # an error event mid-stream
        ended.error = failed
    return ended


def complete(rig: GatewayRig, model: str, **extra: Any) -> tuple[Ended, Any]:
    ended = Ended()
    try:
        raw = rig.client().chat.completions.with_raw_response.create(
            model=model, messages=MESSAGES, **extra
        )
    except openai.APIStatusError as failed:
        ended.request_id = failed.response.headers["x-request-id"]
        ended.error = failed
        return ended, None
    ended.request_id = raw.headers["x-request-id"]
    completion = raw.parse()
    ended.text = completion.choices[0].message.content or ""
    return ended, completion


def error_of(ended: Ended) -> dict[str, Any]:
    assert ended.error is not None
    body = ended.error.body
    assert isinstance(body, dict)
    return body.get("error", body)


def assert_ending(
    rig: GatewayRig,
    ended: Ended,
    before: int,
    *,
    status: str,
    http_status: int,
    source: str,
    price: int,
) -> UsageRecord:
    stored = wait_record(rig, ended.request_id)
    assert (stored.status, stored.http_status, stored.usage_source) == (
        status,
        http_status,
        source,
    )
    assert stored.price_micros == price
    after = balance(rig)
    assert before - after.posted_micros == price
    assert after.held_micros == 0
    assert_ledger_ok(rig)
    return stored


def wait_record(rig: GatewayRig, request_id: str) -> UsageRecord:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with db.session_scope(engine=rig.engine, readonly=True) as session:
            if session.get(UsageRecord, request_id) is not None:
                break
        time.sleep(0.05)
    return record(rig, request_id)


# ------------------------------------------------------------------------- complete


@pytest.mark.parametrize("include_usage", [True, False])
def test_complete_stream_with_usage(rig: GatewayRig, include_usage: bool) -> None:
    before = balance(rig).posted_micros
    ended = stream(rig, "chat", stream_options={"include_usage": include_usage})
    assert ended.error is None and ended.text == TEXT
    # The public model name on every chunk, not the upstream's "echo".
    assert {chunk.model for chunk in ended.chunks} == {"chat"}
    usage = [chunk.usage for chunk in ended.chunks if chunk.usage]
    if include_usage:
        assert len(usage) == 1 and micros(usage[0].model_extra["cost"]) == PROVIDER
    else:
        assert usage == []
    assert_ending(rig, ended, before, status="ok", http_status=200, source="provider",
                  price=PROVIDER)  # fmt: skip


def test_complete_non_stream_with_usage(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    ended, completion = complete(rig, "chat")
    assert ended.text == TEXT and completion.model == "chat"
    assert micros(completion.usage.model_extra["cost"]) == PROVIDER
    stored = assert_ending(rig, ended, before, status="ok", http_status=200, source="provider",
                           price=PROVIDER)  # fmt: skip
    assert (stored.public_model, stored.upstream_model) == ("chat", "echo")


def test_complete_without_usage(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    ended, completion = complete(rig, "nousage")
    assert completion.usage.model_extra["estimated"] is True
    assert micros(completion.usage.model_extra["cost"]) == estimate(TEXT)
    assert_ending(rig, ended, before, status="ok", http_status=200, source="estimated",
                  price=estimate(TEXT))  # fmt: skip
    before = balance(rig).posted_micros
    streamed = stream(rig, "nousage", stream_options={"include_usage": True})
    assert streamed.text == TEXT and not any(c.usage for c in streamed.chunks)
    assert_ending(rig, streamed, before, status="ok", http_status=200, source="estimated",
                  price=estimate(TEXT))  # fmt: skip


def test_explicit_zero_usage(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    ended, completion = complete(rig, "zero")
    assert completion.usage.completion_tokens == 0
    assert micros(completion.usage.model_extra["cost"]) == 0
    assert_ending(rig, ended, before, status="ok", http_status=200, source="provider", price=0)


# ------------------------------------------------------------- before the first byte


@pytest.mark.parametrize("streamed", [True, False])
def test_upstream_5xx_before_the_first_byte(rig: GatewayRig, streamed: bool) -> None:
    before = balance(rig).posted_micros
    ended = stream(rig, "fail500") if streamed else complete(rig, "fail500")[0]
    assert isinstance(ended.error, openai.InternalServerError)
    assert ended.error.status_code == 502
    assert error_of(ended)["code"] == "upstream_failed"
    assert_ending(rig, ended, before, status="upstream_error", http_status=502, source="none",
                  price=0)  # fmt: skip


@pytest.mark.parametrize("streamed", [True, False])
def test_upstream_4xx_is_passed_through(rig: GatewayRig, streamed: bool) -> None:
    before = balance(rig).posted_micros
    ended = stream(rig, "bad400") if streamed else complete(rig, "bad400")[0]
    assert isinstance(ended.error, openai.BadRequestError)
    assert UPSTREAM_KEY not in str(ended.error.body)
    assert "[redacted]" in error_of(ended)["message"]
    assert_ending(rig, ended, before, status="upstream_error", http_status=400, source="none",
                  price=0)  # fmt: skip


# ------------------------------------------------------------------------ mid-stream


@pytest.mark.parametrize(
    ("model", "text"),
    [("error-mid", "Hello from the"), ("error-same-write", "Hello from the"),
     ("cut", "Hello from the"), ("malformed", "Hello from")],
)  # fmt: skip
def test_an_error_mid_stream_charges_exactly_the_text_delivered(
    rig: GatewayRig, model: str, text: str
) -> None:
    before = balance(rig).posted_micros
    ended = stream(rig, model)
    assert ended.error is not None and ended.text == text
    assert error_of(ended)["code"] == "upstream_failed"
    assert_ending(rig, ended, before, status="upstream_error_mid_stream", http_status=502,
                  source="estimated", price=estimate(text))  # fmt: skip


def test_usage_held_back_when_an_error_comes_is_delivered_text(rig: GatewayRig) -> None:
    """Running usage on every chunk, then an error in the same write: the last chunk (held
    back for its usage) reaches the client, and the upstream's count of it is charged."""
    before = balance(rig).posted_micros
    ended = stream(rig, "usage-then-error")
    assert ended.error is not None and ended.text == "Hello from the"
    price = cost_micros(PRICE, TokenUsage(prompt_tokens=11, completion_tokens=3))
    assert_ending(rig, ended, before, status="upstream_error_mid_stream", http_status=502,
                  source="provider", price=price)  # fmt: skip


def test_a_stream_closed_without_done(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    ended = stream(rig, "nodone")
    assert ended.text == TEXT and error_of(ended)["code"] == "upstream_incomplete"
    assert_ending(rig, ended, before, status="upstream_incomplete", http_status=502,
                  source="provider", price=PROVIDER)  # fmt: skip


def test_client_disconnect_mid_stream(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    raw = rig.client().chat.completions.with_raw_response.create(
        model="slow", messages=MESSAGES, stream=True
    )
    ended = Ended()
    ended.request_id = raw.headers["x-request-id"]
    events = raw.parse()
    for i, chunk in enumerate(events):
        ended.text += chunk.choices[0].delta.content or ""
        if i == 10:
            break
    events.close()
    stored = wait_record(rig, ended.request_id)
    # What was relayed is charged: at least the text the client read, estimated.
    assert stored.completion_tokens >= tokens.text_tokens(ended.text)
    assert stored.prompt_tokens == PROMPT_ESTIMATE
    assert_ending(rig, ended, before, status="client_disconnected", http_status=499,
                  source="estimated", price=stored.price_micros)  # fmt: skip
    assert stored.price_micros > 0


# ------------------------------------------------------------------------ hold lifetime


@pytest.fixture
def short_budget(rig: GatewayRig, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The request budget a short hold lifetime leaves (the TTL itself must be at least 90)."""
    monkeypatch.setattr(rig.app.state.gateway, "request_budget_s", 0.6)
    yield


@pytest.mark.usefixtures("short_budget")
def test_hold_lifetime_cuts_a_stream(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    ended = stream(rig, "slow")
    assert error_of(ended)["code"] == "upstream_timeout"
    assert ended.text
    assert_ending(rig, ended, before, status="upstream_error_mid_stream", http_status=502,
                  source="estimated", price=estimate(ended.text))  # fmt: skip


@pytest.mark.usefixtures("short_budget")
def test_hold_lifetime_cuts_a_non_stream_request(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    ended, _ = complete(rig, "slowok")
    assert ended.error is not None and ended.error.status_code == 504  # type: ignore[attr-defined]
    assert error_of(ended)["code"] == "upstream_timeout"
    assert_ending(rig, ended, before, status="upstream_error", http_status=504, source="none",
                  price=0)  # fmt: skip


# -------------------------------------------------------------------- settlement fails


@pytest.fixture
def broken_settlement(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("settlement exploded")

    monkeypatch.setattr(HotLedger, "settle", fail)
    monkeypatch.setattr(metering, "settle", fail)


@pytest.mark.usefixtures("broken_settlement")
@pytest.mark.parametrize("streamed", [True, False])
def test_a_settlement_that_fails(rig: GatewayRig, streamed: bool) -> None:
    before = balance(rig).posted_micros
    ended = stream(rig, "chat") if streamed else complete(rig, "chat")[0]
    assert error_of(ended)["code"] == "metering_failed"
    if not streamed:
        assert isinstance(ended.error, openai.InternalServerError)
    stored = assert_ending(rig, ended, before, status="settlement_failed", http_status=500,
                           source="none", price=0)  # fmt: skip
    assert stored.price_micros == 0


# ------------------------------------------------------- a JSON answer to a stream request


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_json_answer_to_a_stream_request_is_relayed_as_a_stream(
    rig: GatewayRig, include_usage: bool
) -> None:
    before = balance(rig).posted_micros
    ended = stream(rig, "json-stream", stream_options={"include_usage": include_usage})
    assert ended.error is None and ended.text == TEXT
    assert ended.chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in ended.chunks if c.choices][-1] == "stop"
    assert {c.model for c in ended.chunks} == {"json-stream"}
    usage = [c.usage for c in ended.chunks if c.usage]
    assert len(usage) == (1 if include_usage else 0)
    if include_usage:
        assert micros(usage[0].model_extra["cost"]) == PROVIDER
    assert_ending(rig, ended, before, status="ok", http_status=200, source="provider",
                  price=PROVIDER)  # fmt: skip


def test_a_json_answer_with_tool_calls_streams_its_tool_calls(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    ended = stream(rig, "json-tools")
    calls = [c.choices[0].delta.tool_calls for c in ended.chunks if c.choices]
    deltas = [call for group in calls if group for call in group]
    assert len(deltas) == 1 and deltas[0].index == 0 and deltas[0].id == "call_json_1"
    assert deltas[0].function.name == "get_weather"
    assert deltas[0].function.arguments == orjson_text(TOOL_ARGUMENTS)
    assert ended.chunks[-1].choices[0].finish_reason == "tool_calls"
    assert_ending(rig, ended, before, status="ok", http_status=200, source="provider",
                  price=PROVIDER)  # fmt: skip


def orjson_text(value: Any) -> str:
    import json

    return json.dumps(value)


# ---------------------------------------------------------------- 200 with an error body


@pytest.mark.parametrize("streamed", [True, False])
def test_a_200_that_is_only_an_error_is_an_upstream_failure(
    rig: GatewayRig, streamed: bool
) -> None:
    before = balance(rig).posted_micros
    ended = stream(rig, "error200") if streamed else complete(rig, "error200")[0]
    assert isinstance(ended.error, openai.InternalServerError)
    assert ended.error.status_code == 502
    error = error_of(ended)
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_failed")
    assert ERROR_200_MESSAGE in error["message"]
    assert UPSTREAM_KEY not in error["message"] and "[redacted]" in error["message"]
    stored = assert_ending(rig, ended, before, status="upstream_error", http_status=502,
                           source="none", price=0)  # fmt: skip
    assert stored.attempts == 1


@pytest.mark.parametrize("streamed", [True, False])
def test_a_200_that_is_only_an_error_falls_through_to_the_next_route(
    rig: GatewayRig, streamed: bool
) -> None:
    before = balance(rig).posted_micros
    if streamed:
        ended = stream(rig, "error200-fallback", stream_options={"include_usage": True})
        assert {c.model for c in ended.chunks} == {"error200-fallback"}
    else:
        ended, completion = complete(rig, "error200-fallback")
        assert completion.model == "error200-fallback"
    assert ended.error is None and ended.text == TEXT
    stored = assert_ending(rig, ended, before, status="ok", http_status=200, source="provider",
                           price=PROVIDER)  # fmt: skip
    assert (stored.attempts, stored.upstream_model) == (2, "echo")
