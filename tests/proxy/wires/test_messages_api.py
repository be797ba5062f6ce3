"""POST /v1/messages and /v1/messages/count_tokens over chat upstreams, driven by the official
anthropic SDK (and raw HTTP for the error events) over real loopback TCP."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from creditdash.catalog.prices import TokenUsage, cost_micros
from tests.proxy.conftest import GatewayRig
from tests.proxy.fake_upstream import TOOL_ARGUMENTS
from tests.proxy.test_gateway import (
    FAKE_USAGE,
    PRICE,
    assert_ledger_ok,
    balance,
    micros,
    record,
    records,
)

HELLO = [{"role": "user", "content": "Say hello"}]
TEXT = "Hello from the fake upstream."
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["city"],
    },
}


def client(rig: GatewayRig, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key or rig.key, base_url=rig.base_url, max_retries=0)


def charged(rig: GatewayRig) -> int:
    """The sum of the generation records' cost (micros)."""
    return sum(r.price_micros for r in records(rig))


def post(rig: GatewayRig, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"x-api-key": key or rig.key, "anthropic-version": "2023-06-01"}
    return httpx.post(rig.base_url + "/v1/messages", json=body, headers=headers, timeout=30)


def events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """A Messages event stream as (event name, data) pairs."""
    found = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        found.append((lines["event"], orjson.loads(lines["data"])))
    return found


# ---------------------------------------------------------------------------- happy paths


def test_create_answers_in_messages_shape_and_charges_exactly(rig: GatewayRig) -> None:
    before = balance(rig)
    raw = client(rig).messages.with_raw_response.create(
        model="chat",
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=HELLO,
        metadata={"user_id": "someone"},
        extra_body={
            "top_k": 5,
            "temperature": 0.5,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
        },
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.model == "chat"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == TEXT  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)
    expected = cost_micros(PRICE, FAKE_USAGE)
    assert micros(message.usage.model_extra["cost"]) == expected  # type: ignore[index]
    assert b'"cost":0.000025' in raw.http_response.content
    assert before.posted_micros - balance(rig).posted_micros == expected == charged(rig)
    stored = record(rig, raw.headers["x-request-id"])
    assert (stored.endpoint, stored.stream, stored.status) == ("messages", False, "ok")
    assert stored.upstream_endpoint == "chat"  # translated: the route speaks chat only
    # What reached the upstream: a chat body, system first, top_k and metadata dropped.
    sent = rig.upstream.seen[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][1] == {"role": "user", "content": "Say hello"}
    assert sent["max_tokens"] == 50 and sent["temperature"] == 0.5
    assert "top_k" not in sent and "metadata" not in sent and "thinking" not in sent
    assert_ledger_ok(rig)


def test_bearer_token_authenticates_too(rig: GatewayRig) -> None:
    bearer = anthropic.Anthropic(auth_token=rig.key, base_url=rig.base_url, max_retries=0)
    message = bearer.messages.create(model="chat", max_tokens=20, messages=HELLO)
    assert message.content[0].text == TEXT  # type: ignore[union-attr]
    assert_ledger_ok(rig)


def test_cached_usage_excludes_cache_reads_from_input_tokens(rig: GatewayRig) -> None:
    before = balance(rig)
    message = client(rig).messages.create(model="cached", max_tokens=400, messages=HELLO)
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (600, 400)
    assert (usage.cache_creation_input_tokens, usage.output_tokens) == (0, 300)
    tokens = TokenUsage(prompt_tokens=1000, completion_tokens=300, cached_tokens=400,
                        reasoning_tokens=200)  # fmt: skip
    expected = cost_micros(PRICE, tokens)
    # 600 x 1.00 + 400 x 0.50 + 300 x 2.00 per Mtok.
    assert expected == 1400
    assert micros(usage.model_extra["cost"]) == expected  # type: ignore[index]
    assert before.posted_micros - balance(rig).posted_micros == expected == charged(rig)
    assert_ledger_ok(rig)


def test_stream_text_in_anthropic_event_order(rig: GatewayRig) -> None:
    before = balance(rig)
    with client(rig).messages.stream(model="chat", max_tokens=50, messages=HELLO) as stream:
        names = [event.type for event in stream]
        final = stream.get_final_message()
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert "content_block_start" in names and "content_block_stop" in names
    assert names[-2] == "message_delta"
    assert final.content[0].text == TEXT  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 7)
    expected = cost_micros(PRICE, FAKE_USAGE)
    assert before.posted_micros - balance(rig).posted_micros == expected == charged(rig)
    (stored,) = records(rig)
    assert (stored.endpoint, stored.stream, stored.usage_source) == ("messages", True, "provider")
    assert_ledger_ok(rig)


def test_stream_message_delta_carries_usage_and_exact_cost(rig: GatewayRig) -> None:
    response = post(rig, {"model": "cached", "max_tokens": 400, "messages": HELLO, "stream": True})
    assert response.status_code == 200
    found = events(response.text)
    names = [name for name, _ in found]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 1
    delta = found[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert '"cost":0.000025' in response.text  # the fake streams USAGE, not the cached counts
    assert delta["usage"]["input_tokens"] == 11 and delta["usage"]["output_tokens"] == 7
    assert_ledger_ok(rig)


def test_tools_round_trip(rig: GatewayRig) -> None:
    before = balance(rig)
    sdk = client(rig)
    first = sdk.messages.create(
        model="tools",
        max_tokens=50,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert first.stop_reason == "tool_use"
    (call,) = first.content
    assert call.type == "tool_use" and call.name == "get_weather" and call.input == TOOL_ARGUMENTS
    sent = rig.upstream.seen[-1].body
    assert sent["tool_choice"] == "required"
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    answered = {"type": "tool_result", "tool_use_id": call.id, "content": "18 C, sunny"}
    second = sdk.messages.create(
        model="tools",
        max_tokens=50,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [c.model_dump() for c in first.content]},
            {"role": "user", "content": [answered]},  # type: ignore[list-item]
        ],
    )
    assert second.content[0].text == TEXT  # type: ignore[union-attr]
    sent = rig.upstream.seen[-1].body
    assistant, result = sent["messages"][-2:]
    assert assistant["tool_calls"][0]["id"] == call.id
    assert orjson.loads(assistant["tool_calls"][0]["function"]["arguments"]) == TOOL_ARGUMENTS
    assert result == {"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"}
    expected = 2 * cost_micros(PRICE, FAKE_USAGE)
    assert before.posted_micros - balance(rig).posted_micros == expected == charged(rig)
    assert_ledger_ok(rig)


def test_stream_tool_call_as_input_json_deltas(rig: GatewayRig) -> None:
    with client(rig).messages.stream(
        model="tools",
        max_tokens=50,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert kinds and set(kinds) == {"input_json_delta"}
    (call,) = final.content
    assert call.type == "tool_use" and call.id == "call_fake_1"
    assert call.input == TOOL_ARGUMENTS and final.stop_reason == "tool_use"
    assert charged(rig) == cost_micros(PRICE, FAKE_USAGE)
    assert_ledger_ok(rig)


def test_images_and_stop_sequences_reach_the_upstream(rig: GatewayRig) -> None:
    client(rig).messages.create(
        model="chat",
        max_tokens=20,
        stop_sequences=["END"],
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            {"type": "text", "text": "What is this?"}]}],
    )  # fmt: skip
    sent = rig.upstream.seen[-1].body
    assert sent["stop"] == ["END"]
    assert [p["type"] for p in sent["messages"][0]["content"]] == ["image_url"] * 2 + ["text"]
    assert sent["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;")
    assert_ledger_ok(rig)


def test_count_tokens_is_free_and_calls_no_upstream(rig: GatewayRig) -> None:
    before, seen = balance(rig), len(rig.upstream.seen)
    counted = client(rig).messages.count_tokens(
        model="chat",
        messages=HELLO,
        system="Be brief.",
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert counted.input_tokens > 0
    assert len(rig.upstream.seen) == seen and records(rig) == []
    assert balance(rig) == before
    with pytest.raises(anthropic.AuthenticationError):
        client(rig, "sk-cd-wrong").messages.count_tokens(model="chat", messages=HELLO)


def test_models_list_in_anthropic_shape(rig: GatewayRig) -> None:
    page = client(rig).models.list()
    ids = [m.id for m in page.data]
    assert "chat" in ids and page.data[0].type == "model"
    anthropic_headers = {"x-api-key": rig.key, "anthropic-version": "2023-06-01"}
    raw = httpx.get(rig.base_url + "/v1/models", headers=anthropic_headers).json()
    assert raw["has_more"] is False and (raw["first_id"], raw["last_id"]) == (ids[0], ids[-1])
    first = raw["data"][0]
    assert set(first) == {"type", "id", "display_name", "created_at"}
    assert first["created_at"].endswith("Z")
    wrong = {**anthropic_headers, "x-api-key": "sk-cd-wrong"}
    refused = httpx.get(rig.base_url + "/v1/models", headers=wrong)
    assert anthropic_error(refused) == (401, "authentication_error")
    # Without anthropic-version the OpenAI shape is unchanged.
    assert rig.client().models.list().data[0].object == "model"


# --------------------------------------------------------------------------------- errors


def anthropic_error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert body["type"] == "error" and isinstance(body["error"]["message"], str)
    return response.status_code, body["error"]["type"]


def test_refusals_in_anthropic_shape(rig: GatewayRig) -> None:
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        client(rig, "sk-cd-wrong").messages.create(model="chat", max_tokens=5, messages=HELLO)
    assert bad_key.value.status_code == 401
    assert bad_key.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert anthropic_error(post(rig, {"model": "chat", "max_tokens": 5, "messages": HELLO},
                                "sk-cd-wrong")) == (401, "authentication_error")  # fmt: skip
    with pytest.raises(anthropic.NotFoundError) as unknown:
        client(rig).messages.create(model="nope", max_tokens=5, messages=HELLO)
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    missing = post(rig, {"model": "chat", "messages": HELLO})
    assert anthropic_error(missing) == (400, "invalid_request_error")
    assert "max_tokens" in missing.json()["error"]["message"]
    _customer, _account, poor = rig.new_customer(1)
    poor_answer = post(rig, {"model": "chat", "max_tokens": 5, "messages": HELLO}, poor)
    assert anthropic_error(poor_answer) == (402, "billing_error")
    # OpenAI's paths do not take x-api-key.
    openai_path = httpx.post(rig.base_url + "/v1/chat/completions", headers={"x-api-key": rig.key},
                             json={"model": "chat", "messages": HELLO})  # fmt: skip
    assert openai_path.status_code == 401 and "error" in openai_path.json()
    assert records(rig) == []
    assert_ledger_ok(rig)


def test_upstream_500_after_all_routes(rig: GatewayRig) -> None:
    with pytest.raises(anthropic.APIStatusError) as failed:
        client(rig).messages.create(model="fail500", max_tokens=5, messages=HELLO)
    assert failed.value.status_code == 502
    assert failed.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert charged(rig) == 0
    assert_ledger_ok(rig)


def test_upstream_4xx_passes_through_in_anthropic_shape(rig: GatewayRig) -> None:
    answer = post(rig, {"model": "bad400", "max_tokens": 5, "messages": HELLO})
    assert anthropic_error(answer) == (400, "invalid_request_error")
    assert "SECRET" not in answer.text and "bad request" in answer.text
    assert_ledger_ok(rig)


@pytest.mark.parametrize("model", ["nodone", "malformed"])
def test_a_failed_stream_ends_with_an_error_event(rig: GatewayRig, model: str) -> None:
    before = balance(rig)
    response = post(rig, {"model": model, "max_tokens": 50, "messages": HELLO, "stream": True})
    found = events(response.text)
    names = [name for name, _ in found]
    assert names[0] == "message_start" and names[-1] == "error"
    assert "message_stop" not in names
    assert found[-1][1]["type"] == "error" and found[-1][1]["error"]["type"] == "api_error"
    # What was produced before the failure is charged, once, and matches the records.
    assert before.posted_micros - balance(rig).posted_micros == charged(rig)
    assert_ledger_ok(rig)
    sdk = client(rig)
    with (
        pytest.raises(anthropic.APIError),
        sdk.messages.stream(model=model, max_tokens=50, messages=HELLO) as stream,
    ):
        stream.until_done()


def test_cost_is_exact_decimal_text(rig: GatewayRig) -> None:
    body = post(rig, {"model": "chat", "max_tokens": 20, "messages": HELLO}).json()
    assert Decimal(str(body["usage"]["cost"])) == Decimal("0.000025")
    assert body["usage"]["cache_read_input_tokens"] == 0
