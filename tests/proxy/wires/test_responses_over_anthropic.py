"""A Responses client on Anthropic-kind routes: its request is translated twice (Responses to
the core's chat body, chat to Messages) and the Messages answer back, streamed or not, with tool
calls and prompt-cache usage billed per the usage table."""

from __future__ import annotations

import json
from typing import Any

from creditdash.catalog.prices import TokenUsage, cost_micros
from tests.proxy.conftest import GatewayRig
from tests.proxy.fake_anthropic import TEXT, TOOL_ID, TOOL_INPUT
from tests.proxy.wires.test_anthropic_upstream import (
    FAKE_USAGE,
    PRICE,
    assert_books_balance,
    generation,
    micros,
    posted,
)

WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_create_is_answered_from_messages_and_charged_exactly(rig: GatewayRig) -> None:
    before = posted(rig)
    raw = rig.client().responses.with_raw_response.create(
        model="claude", input="Say hello", instructions="Be brief.", max_output_tokens=40
    )
    response = raw.parse()
    assert (response.status, response.model) == ("completed", "claude")
    assert response.output_text == "".join(TEXT)
    sent = rig.anthropic.seen[-1]
    assert sent.path == "/v1/messages"
    assert sent.body["system"] == "Be brief."
    assert sent.body["max_tokens"] == 40
    assert [m["role"] for m in sent.body["messages"]] == ["user"]
    usage = response.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (13, 6)
    expected = cost_micros(PRICE, FAKE_USAGE)
    assert micros(usage.model_extra["cost"]) == expected  # type: ignore[index]
    found = generation(rig, raw.headers["x-request-id"])
    assert (found["endpoint"], found["upstream_endpoint"]) == ("responses", "messages")
    assert before - posted(rig) == expected
    assert_books_balance(rig, before)


def test_a_function_call_streams_back_and_its_output_goes_out_as_a_tool_result(
    rig: GatewayRig,
) -> None:
    before = posted(rig)
    client = rig.client()
    with client.responses.stream(model="claude-tools", input="Weather in Berlin?",
                                 tools=[WEATHER]) as stream:  # fmt: skip
        events = list(stream)
        first = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == TOOL_INPUT
    assert calls[0].call_id == TOOL_ID
    assert rig.anthropic.seen[-1].body["tools"] == [
        {"name": "get_weather", "description": "The weather in a city.",
         "input_schema": WEATHER["parameters"]}
    ]  # fmt: skip

    second = client.responses.create(
        model="claude-tools",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": TOOL_ID, "output": "12 degrees"}],
        tools=[WEATHER],
    )
    turns = rig.anthropic.seen[-1].body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert {"type": "tool_use", "id": TOOL_ID, "name": "get_weather",
            "input": TOOL_INPUT} in turns[1]["content"]  # fmt: skip
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": TOOL_ID, "content": "12 degrees"}
    ]
    assert second.previous_response_id == first.id
    assert first.usage is not None and second.usage is not None
    spent = micros(first.usage.model_extra["cost"]) + micros(second.usage.model_extra["cost"])  # type: ignore[index]
    assert before - posted(rig) == spent
    assert_books_balance(rig, before)


def test_cache_reads_and_writes_are_reported_and_billed(rig: GatewayRig) -> None:
    before = posted(rig)
    events = list(rig.client().responses.create(model="claude-cache", input="Hi", stream=True))
    completed = events[-1]
    assert completed.type == "response.completed"
    usage = completed.response.usage  # type: ignore[union-attr]
    assert usage is not None
    # Anthropic's input_tokens (600) excludes the 400 cache reads and 100 cache writes; the
    # Responses usage counts all 1100, 400 of them cached.
    assert (usage.input_tokens, usage.output_tokens) == (1100, 300)
    assert usage.input_tokens_details.cached_tokens == 400
    charged = TokenUsage(1100, 300, cached_tokens=400, cache_write_tokens=100)
    assert cost_micros(PRICE, charged) == 1525
    assert micros(usage.model_extra["cost"]) == 1525  # type: ignore[index]
    assert before - posted(rig) == 1525
    assert_books_balance(rig, before)
