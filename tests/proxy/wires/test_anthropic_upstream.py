"""Chat clients on Anthropic-kind routes: the official openai SDK against the gateway on loopback,
in front of the fake Messages upstream (tests/proxy/fake_anthropic.py). What reached the fake,
what the client got, and what was charged, to the micro. Then the built-in sandbox's Messages
API (the official anthropic SDK) and the demo's demo-claude model on it."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col

from creditdash.billing import ledger
from creditdash.billing.models import UsageRecord
from creditdash.catalog.importer import CatalogSpec, import_catalog, parse_catalog
from creditdash.catalog.models import ANTHROPIC_VERSION, Provider, PublicModel
from creditdash.catalog.prices import Price, TokenUsage, cost_micros
from creditdash.core import db
from creditdash.demo import DEMO_CATALOG, seed_demo
from creditdash.proxy import tokens
from creditdash.proxy.sandbox import count_tokens, create_sandbox_app
from tests.proxy.conftest import ANTHROPIC_KEY, GatewayRig
from tests.proxy.fake_anthropic import TEXT, TOOL_ID, TOOL_INPUT

# CLAUDE_PRICE in conftest: input 1.00, output 2.00, cached input 0.50, cache write 1.25.
PRICE = Price(1_000_000, 2_000_000, 500_000, cache_write_micros_per_mtok=1_250_000)
FAKE_USAGE = TokenUsage(prompt_tokens=13, completion_tokens=6)
MESSAGES: Any = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Say hello"},
]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def posted(rig: GatewayRig) -> int:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        return ledger.get_balance(session, rig.account_id).posted_micros


def records(rig: GatewayRig) -> list[UsageRecord]:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        return list(session.execute(select(UsageRecord)).scalars())


def record(rig: GatewayRig, request_id: str) -> UsageRecord:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        found = session.get(UsageRecord, request_id)
        assert found is not None
        return found


def generation(rig: GatewayRig, request_id: str) -> dict[str, Any]:
    with rig.http() as http:
        response = http.get("/v1/generation", params={"id": request_id})
    assert response.status_code == 200
    found: dict[str, Any] = response.json()
    return found


def assert_books_balance(rig: GatewayRig, before: int) -> None:
    """The balance dropped by exactly what the usage records say was charged."""
    charged = sum(r.price_micros for r in records(rig))
    assert before - posted(rig) == charged
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        assert ledger.verify(session) == []
        assert ledger.open_hold_count(session) == 0


def micros(cost: Any) -> int:
    return int(Decimal(str(cost)) * 1_000_000)


def sse_lines(rig: GatewayRig, body: dict[str, Any]) -> tuple[str, list[str]]:
    with rig.http().stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        return response.headers["x-request-id"], [line for line in response.iter_lines() if line]


# ------------------------------------------------------------------------------ what is sent


def test_chat_non_stream_is_sent_as_messages_and_charged_exactly(rig: GatewayRig) -> None:
    before = posted(rig)
    sent_before = rig.anthropic.count()
    raw = rig.client().chat.completions.with_raw_response.create(
        model="claude", messages=MESSAGES, max_tokens=5000, temperature=0.2
    )
    completion = raw.parse()
    request_id = raw.headers["x-request-id"]
    assert completion.choices[0].message.content == "".join(TEXT)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (13, 6)
    expected = cost_micros(PRICE, FAKE_USAGE)
    assert micros(completion.usage.model_extra["cost"]) == expected  # type: ignore[index]

    assert rig.anthropic.count() == sent_before + 1
    seen = rig.anthropic.seen[-1]
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == ANTHROPIC_KEY
    assert seen.headers["anthropic-version"] == ANTHROPIC_VERSION
    assert seen.headers["x-org"] == "creditdash-tests"  # the provider's extra header
    assert "authorization" not in seen.headers  # neither the customer's key nor a bearer one
    assert seen.body["model"] == "claude-text"
    assert seen.body["system"] == "Be brief."  # lifted out of the turns
    assert seen.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Say hello"}]}
    ]
    assert seen.body["max_tokens"] == 100  # the held cap: 5000 clamped to the model's 100
    assert seen.body["temperature"] == 0.2
    assert "stream" not in seen.body

    stored = record(rig, request_id)
    assert (stored.status, stored.usage_source, stored.price_micros) == ("ok", "provider", expected)
    assert (stored.provider, stored.upstream_model) == ("fake-claude", "claude-text")
    assert stored.attempts == 1
    assert generation(rig, request_id)["upstream_endpoint"] == "messages"
    assert before - posted(rig) == expected
    assert_books_balance(rig, before)


def test_tool_calls_come_back_and_tool_results_go_out_as_blocks(rig: GatewayRig) -> None:
    before = posted(rig)
    client = rig.client()
    ask: list[Any] = [{"role": "user", "content": "Weather in Berlin?"}]
    completion = client.chat.completions.create(
        model="claude-tools", messages=ask, tools=[WEATHER_TOOL], tool_choice="required"
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me look."
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.id == TOOL_ID and call.type == "function"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == TOOL_INPUT  # type: ignore[union-attr]
    first = rig.anthropic.seen[-1].body
    assert first["tools"] == [{"name": "get_weather", "description": "The weather in a city.",
                               "input_schema": WEATHER_TOOL["function"]["parameters"]}]  # fmt: skip
    assert first["tool_choice"] == {"type": "any"}

    follow_up = [*ask, choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": TOOL_ID, "content": "12 degrees"}]  # fmt: skip
    client.chat.completions.create(model="claude-tools", messages=follow_up, tools=[WEATHER_TOOL])
    turns = rig.anthropic.seen[-1].body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": TOOL_ID, "name": "get_weather", "input": TOOL_INPUT},
    ]
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": TOOL_ID, "content": "12 degrees"}
    ]
    assert before - posted(rig) == 2 * cost_micros(PRICE, FAKE_USAGE)
    assert_books_balance(rig, before)


# ---------------------------------------------------------------------------------- streams


def test_stream_with_tools_gives_text_tool_call_finish_and_usage(rig: GatewayRig) -> None:
    before = posted(rig)
    stream = rig.client().chat.completions.create(
        model="claude-tools",
        messages=[{"role": "user", "content": "Weather in Berlin?"}],
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert rig.anthropic.seen[-1].body["stream"] is True
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(TEXT)
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == TOOL_ID and calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert {t.index for t in calls} == {0}
    arguments = "".join(t.function.arguments or "" for t in calls)  # type: ignore[union-attr]
    assert json.loads(arguments) == TOOL_INPUT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls" and finishes.count("tool_calls") == 1
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (13, 6)
    expected = cost_micros(PRICE, FAKE_USAGE)
    assert micros(final.usage.model_extra["cost"]) == expected  # type: ignore[index]
    assert before - posted(rig) == expected
    assert_books_balance(rig, before)


def test_stream_without_usage_asked_ends_with_done_and_is_metered(rig: GatewayRig) -> None:
    before = posted(rig)
    request_id, lines = sse_lines(rig, {"model": "claude", "messages": MESSAGES, "stream": True})
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line[6:]) for line in lines[:-1]]
    assert all("usage" not in p and p["choices"] for p in payloads)  # no usage chunk for it
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads)
    assert text == "".join(TEXT)
    stored = record(rig, request_id)
    assert (stored.status, stored.usage_source, stored.stream) == ("ok", "provider", True)
    assert stored.price_micros == cost_micros(PRICE, FAKE_USAGE)
    assert_books_balance(rig, before)


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [("claude-error-mid", "upstream_error_mid_stream", "upstream_failed"),
     ("claude-cut", "upstream_incomplete", "upstream_incomplete")],
)  # fmt: skip
def test_stream_that_fails_after_text_ends_with_an_error_and_charges_what_was_produced(
    rig: GatewayRig, model: str, status: str, code: str
) -> None:
    before = posted(rig)
    request_id, lines = sse_lines(rig, {"model": model, "messages": MESSAGES, "stream": True})
    assert not any("[DONE]" in line for line in lines)
    assert json.loads(lines[-1][6:])["error"]["code"] == code
    relayed = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(p["choices"][0]["delta"].get("content") or "" for p in relayed)
    assert text == "".join(TEXT[:3])  # three words before the error or the cut
    stored = record(rig, request_id)
    # No usage came before the end: the relay's rule is an estimate of prompt and text.
    assert (stored.status, stored.usage_source) == (status, "estimated")
    assert stored.completion_tokens == tokens.text_tokens(text)
    assert stored.prompt_tokens > 0
    usage = TokenUsage(
        prompt_tokens=stored.prompt_tokens, completion_tokens=stored.completion_tokens
    )
    assert stored.price_micros == cost_micros(PRICE, usage) > 0
    assert_books_balance(rig, before)


# ------------------------------------------------------------------------- cache and errors


@pytest.mark.parametrize("stream", [False, True])
def test_cache_reads_and_writes_are_billed_at_their_own_prices(
    rig: GatewayRig, stream: bool
) -> None:
    before = posted(rig)
    client = rig.client()
    if stream:
        streamed = client.chat.completions.with_raw_response.create(
            model="claude-cache", messages=MESSAGES, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        request_id = streamed.headers["x-request-id"]
        usage = list(streamed.parse())[-1].usage
    else:
        raw = client.chat.completions.with_raw_response.create(
            model="claude-cache", messages=MESSAGES
        )
        request_id = raw.headers["x-request-id"]
        usage = raw.parse().usage
    # 600 uncached x 1.00 + 400 cache reads x 0.50 + 100 cache writes x 1.25 + 300 out x 2.00
    charged = TokenUsage(1100, 300, cached_tokens=400, cache_write_tokens=100)
    assert cost_micros(PRICE, charged) == 600 + 200 + 125 + 600 == 1525
    assert usage is not None and micros(usage.model_extra["cost"]) == 1525  # type: ignore[index]
    assert usage.prompt_tokens == 1100 and usage.completion_tokens == 300
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 400
    assert getattr(usage.prompt_tokens_details, "cache_write_tokens", None) == 100
    found = generation(rig, request_id)
    assert (found["prompt_tokens"], found["completion_tokens"]) == (1100, 300)
    assert (found["cached_tokens"], found["cache_write_tokens"]) == (400, 100)
    assert found["upstream_endpoint"] == "messages"
    assert micros(found["cost"]) == 1525
    assert before - posted(rig) == 1525
    assert_books_balance(rig, before)


def test_completions_and_embeddings_on_an_anthropic_model_are_refused_free(
    rig: GatewayRig,
) -> None:
    before = posted(rig)
    sent_before = rig.anthropic.count()
    client = rig.client()
    with pytest.raises(openai.BadRequestError) as legacy:
        client.completions.create(model="claude", prompt="Say hello", max_tokens=10)
    with pytest.raises(openai.BadRequestError) as vectors:
        client.embeddings.create(model="claude", input="hello")
    for refused in (legacy.value, vectors.value):
        error = refused.body
        assert isinstance(error, dict) and error["code"] == "unsupported_endpoint"
        assert "claude" in error["message"]
    assert rig.anthropic.count() == sent_before  # nothing was sent
    assert [r.price_micros for r in records(rig)] == [0, 0]
    assert all(r.status == "upstream_error" for r in records(rig))
    assert posted(rig) == before
    assert_books_balance(rig, before)


def test_overloaded_529_falls_through_to_the_next_route_of_another_kind(rig: GatewayRig) -> None:
    # Route failures count per process; the overloaded route must not rest from earlier tests.
    rig.app.state.gateway.routes.reset()
    before = posted(rig)
    overloaded = rig.anthropic.count("claude-overloaded")
    raw = rig.client().chat.completions.with_raw_response.create(
        model="claude-fallback", messages=MESSAGES
    )
    assert raw.parse().choices[0].message.content == "Hello from the fake upstream."
    assert rig.anthropic.count("claude-overloaded") == overloaded + 1
    found = generation(rig, raw.headers["x-request-id"])
    assert (found["provider"], found["upstream_model"], found["attempts"]) == ("fake", "echo", 2)
    assert found["upstream_endpoint"] == "chat"
    # The OpenAI fake's usage (11 in, 7 out) at the model's price.
    assert before - posted(rig) == cost_micros(PRICE, TokenUsage(11, 7))
    # Alone, the overloaded route fails the request with nothing charged.
    response = rig.http().post(
        "/v1/chat/completions", json={"model": "claude-overloaded", "messages": MESSAGES}
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_failed"
    assert_books_balance(rig, before)


def test_upstream_400_reaches_a_chat_client_in_openais_shape_redacted(rig: GatewayRig) -> None:
    before = posted(rig)
    sent_before = rig.anthropic.count("claude-invalid")
    response = rig.http().post(
        "/v1/chat/completions", json={"model": "claude-invalid", "messages": MESSAGES}
    )
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "invalid_request_error"
    assert body["error"]["message"].startswith("messages: bad turn order")
    assert ANTHROPIC_KEY not in response.text and "[redacted]" in response.text
    assert rig.anthropic.count("claude-invalid") == sent_before + 1  # not retried
    with pytest.raises(openai.BadRequestError):
        rig.client().chat.completions.create(model="claude-invalid", messages=MESSAGES)
    assert posted(rig) == before
    assert_books_balance(rig, before)


# ------------------------------------------------------------------- the built-in sandbox

DEMO_CLAUDE_PRICE = Price(800_000, 4_000_000, 80_000, cache_write_micros_per_mtok=1_000_000)
SYSTEM: Any = [{"type": "text", "text": "You are the creditdash test suite's helper.",
                "cache_control": {"type": "ephemeral"}}]  # fmt: skip


def sandbox_sdk() -> anthropic.AsyncAnthropic:
    # The SDK's own HTTP client package (httpx2), carrying requests into the app in-process.
    transport = httpx2.ASGITransport(app=create_sandbox_app())
    return anthropic.AsyncAnthropic(
        api_key="unused", base_url="http://creditdash-sandbox",
        http_client=httpx2.AsyncClient(transport=transport), max_retries=0,
    )  # fmt: skip


@pytest.mark.anyio
async def test_the_sandbox_answers_messages_with_cache_usage() -> None:
    client = sandbox_sdk()
    ask: Any = {"model": "sandbox-claude", "max_tokens": 9, "system": SYSTEM,
                "messages": [{"role": "user", "content": "Hello, sandbox!"}]}  # fmt: skip
    first = await client.messages.create(**ask)
    again = await client.messages.create(**ask)
    assert first.type == "message" and first.role == "assistant"
    text = first.content[0].text  # type: ignore[union-attr]
    assert text and text == again.content[0].text  # type: ignore[union-attr]
    assert first.stop_reason == "max_tokens" and first.usage.output_tokens == 9
    assert count_tokens(text) == 9
    prefix = count_tokens(SYSTEM[0]["text"])
    # The prefix up to the breakpoint is written to the cache once, then read from it.
    assert first.usage.cache_creation_input_tokens == prefix
    assert (first.usage.cache_read_input_tokens, again.usage.cache_creation_input_tokens) == (0, 0)
    assert again.usage.cache_read_input_tokens == prefix
    assert first.usage.input_tokens == again.usage.input_tokens > 0

    async with client.messages.stream(**ask) as stream:
        streamed = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(streamed) == text and final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 9 and final.usage.cache_read_input_tokens == prefix
    with pytest.raises(anthropic.BadRequestError) as refused:
        await client.messages.create(model="sandbox-claude", max_tokens=5, messages=[])
    assert refused.value.status_code == 400
    await client.close()


def test_demo_claude_on_the_sandbox_serves_chat_clients(rig: GatewayRig) -> None:
    with db.session_scope(engine=rig.engine) as session:
        import_catalog(session, parse_catalog(DEMO_CATALOG))
    rig.app.state.gateway.catalog.invalidate()
    before = posted(rig)
    ask: Any = {"model": "demo-claude", "max_tokens": 12,
                "messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Hello, sandbox!"}]}  # fmt: skip
    client = rig.client()
    raw = client.chat.completions.with_raw_response.create(**ask)
    completion = raw.parse()
    text = completion.choices[0].message.content or ""
    assert count_tokens(text) == 12 and completion.choices[0].finish_reason == "length"
    usage = completion.usage
    assert usage is not None and usage.completion_tokens == 12
    charged = TokenUsage(prompt_tokens=usage.prompt_tokens, completion_tokens=12)
    assert micros(usage.model_extra["cost"]) == cost_micros(DEMO_CLAUDE_PRICE, charged)  # type: ignore[index]
    found = generation(rig, raw.headers["x-request-id"])
    assert (found["provider"], found["upstream_model"]) == ("sandbox-anthropic", "sandbox-claude")
    assert found["upstream_endpoint"] == "messages"

    chunks = list(client.chat.completions.create(
        stream=True, stream_options={"include_usage": True}, **ask))  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    assert before - posted(rig) == 2 * cost_micros(DEMO_CLAUDE_PRICE, charged)
    assert_books_balance(rig, before)


def test_demo_adds_the_anthropic_sandbox_to_an_install_seeded_before_it(
    sqlite_engine: Engine,
) -> None:
    # An install seeded before: the sandbox provider and its models only, one price changed.
    spec = parse_catalog(DEMO_CATALOG)
    older = CatalogSpec(
        providers=[p for p in spec.providers if p.name == "sandbox"],
        models=[m for m in spec.models if m.name != "demo-claude"],
    )
    with db.session_scope(engine=sqlite_engine) as session:
        import_catalog(session, older)
        changed = session.execute(
            select(PublicModel).where(col(PublicModel.name) == "gpt-4o-mini")
        ).scalar_one()
        changed.input_price_micros_per_mtok = 999
    assert any("demo-claude" in line for line in seed_demo())
    assert any("prices unchanged" in line for line in seed_demo())
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        kinds = dict(session.execute(select(Provider.name, Provider.kind)).all())
        assert kinds == {"sandbox": "sandbox", "sandbox-anthropic": "anthropic-sandbox"}
        prices = dict(
            session.execute(select(PublicModel.name, PublicModel.input_price_micros_per_mtok)).all()
        )
    assert prices["gpt-4o-mini"] == 999 and prices["demo-claude"] == 800_000


# ------------------------------------------------- Messages clients on Anthropic routes


def test_a_messages_client_passes_through_natively_and_is_charged_for_cache(
    rig: GatewayRig,
) -> None:
    before = posted(rig)
    client = anthropic.Anthropic(api_key=rig.key, base_url=rig.base_url, max_retries=0)
    system: Any = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    turns: Any = [{"role": "user", "content": "Say hello"}]
    raw = client.messages.with_raw_response.create(
        model="claude-cache", max_tokens=4000, system=system, messages=turns
    )
    message = raw.parse()
    assert message.content[0].text == "".join(TEXT)  # type: ignore[union-attr]
    assert message.usage.cache_read_input_tokens == 400
    assert message.usage.cache_creation_input_tokens == 100
    assert (message.usage.input_tokens, message.usage.output_tokens) == (600, 300)
    seen = rig.anthropic.last("claude-cache")
    # The client's own body, with the route's model and the held cap (4000 clamped to 400).
    assert seen.body == {"model": "claude-cache", "max_tokens": 400, "system": system,
                         "messages": turns}  # fmt: skip
    assert seen.headers["x-api-key"] == ANTHROPIC_KEY
    found = generation(rig, raw.headers["x-request-id"])
    assert (found["cached_tokens"], found["cache_write_tokens"]) == (400, 100)
    assert found["upstream_endpoint"] == "messages"
    assert micros(found["cost"]) == 1525 == before - posted(rig)

    with client.messages.stream(model="claude-tools", max_tokens=50, messages=turns) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == TOOL_INPUT  # type: ignore[union-attr]
    assert rig.anthropic.last("claude-tools").body["stream"] is True
    assert_books_balance(rig, before)


def test_demo_claude_serves_messages_clients_with_cache_writes_then_reads(
    rig: GatewayRig,
) -> None:
    with db.session_scope(engine=rig.engine) as session:
        import_catalog(session, parse_catalog(DEMO_CATALOG))
    rig.app.state.gateway.catalog.invalidate()
    before = posted(rig)
    client = anthropic.Anthropic(api_key=rig.key, base_url=rig.base_url, max_retries=0)
    # A system prompt no earlier test sent: the sandbox's cache has not seen it.
    text = f"Answer as the helper of run {time.time_ns()}."
    system: Any = [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]
    ask: Any = {"model": "demo-claude", "max_tokens": 8, "system": system,
                "messages": [{"role": "user", "content": "Hello"}]}  # fmt: skip
    first = client.messages.create(**ask)
    second = client.messages.create(**ask)
    prefix = count_tokens(text)
    assert (first.usage.cache_creation_input_tokens, first.usage.cache_read_input_tokens) == (
        prefix, 0)  # fmt: skip
    assert (second.usage.cache_creation_input_tokens, second.usage.cache_read_input_tokens) == (
        0, prefix)  # fmt: skip
    uncached = first.usage.input_tokens
    expected = [
        cost_micros(DEMO_CLAUDE_PRICE, TokenUsage(uncached + prefix, 8, cache_write_tokens=prefix)),
        cost_micros(DEMO_CLAUDE_PRICE, TokenUsage(uncached + prefix, 8, cached_tokens=prefix)),
    ]
    assert sorted(r.price_micros for r in records(rig)) == sorted(expected)
    assert before - posted(rig) == sum(expected)
    assert_books_balance(rig, before)
