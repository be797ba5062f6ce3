"""POST /v1/responses (and the stored responses) over the chat core, driven by the official
openai SDK and raw HTTP against the rig, over real loopback TCP."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import openai
import pytest

from creditdash import jobs
from creditdash.catalog.prices import TokenUsage, cost_micros
from creditdash.core import db
from creditdash.core.timeutil import utcnow
from creditdash.proxy.stored_responses import StoredResponse
from creditdash.proxy.wires.responses import ResponsesWire
from creditdash.proxy.wires.responses_translate import response_shell
from tests.proxy.conftest import GatewayRig
from tests.proxy.fake_upstream import TOOL_ARGUMENT
from tests.proxy.test_gateway import (
    FAKE_USAGE,
    PRICE,
    assert_ledger_ok,
    balance,
    micros,
    record,
    records,
)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def charged(rig: GatewayRig, before: int) -> int:
    """The balance drop since before, checked against the usage records' cost."""
    spent = before - balance(rig).posted_micros
    assert spent == sum(r.price_micros for r in records(rig))
    return spent


def sse_events(rig: GatewayRig, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """A streamed request's request id and its events, as raw HTTP reads them."""
    with rig.http().stream("POST", "/v1/responses", json=body) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    return request_id, [json.loads(line[6:]) for line in lines]


# ---------------------------------------------------------------------------- non-streamed


def test_create_answers_a_response_object_charged_exactly(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    raw = rig.client().responses.with_raw_response.create(
        model="chat", input="Say hello", instructions="Be brief.", max_output_tokens=50
    )
    response = raw.parse()
    assert response.id.startswith("resp_") and response.object == "response"
    assert (response.status, response.model) == ("completed", "chat")
    assert response.output_text == "Hello from the fake upstream."
    assert response.output[0].type == "message"
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (11, 7, 18)
    expected = cost_micros(PRICE, FAKE_USAGE)
    assert b'"cost":0.000025' in raw.http_response.content  # exact, written from micros
    assert micros(usage.model_extra["cost"]) == expected  # type: ignore[index]
    assert charged(rig, before) == expected
    stored = record(rig, raw.headers["x-request-id"])
    assert (stored.endpoint, stored.upstream_endpoint, stored.status) == ("responses", "chat", "ok")
    seen = rig.upstream.seen[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Say hello"}]},
    ]
    assert seen.body["max_tokens"] == 50
    assert_ledger_ok(rig)


def test_cached_and_reasoning_tokens_are_reported_and_charged(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    response = rig.client().responses.create(model="cached", input="Think hard")
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens_details.cached_tokens == 400
    assert usage.output_tokens_details.reasoning_tokens == 200
    assert (usage.input_tokens, usage.output_tokens) == (1000, 300)
    expected = cost_micros(
        PRICE,
        TokenUsage(prompt_tokens=1000, completion_tokens=300, cached_tokens=400,
                   reasoning_tokens=200),
    )  # fmt: skip
    assert expected == 600 + 200 + 600
    assert micros(usage.model_extra["cost"]) == expected  # type: ignore[index]
    assert charged(rig, before) == expected
    assert_ledger_ok(rig)


def test_request_fields_are_translated_for_the_chat_upstream(rig: GatewayRig) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    rig.client().responses.create(
        model="chat",
        input=[{"role": "developer", "content": "Answer in JSON."},
               {"role": "user", "content": [{"type": "input_text", "text": "Hi"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA",
                 "detail": "low"}]}],
        reasoning={"effort": "low"},
        text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
        max_output_tokens=40,
        temperature=0.2,
        include=["reasoning.encrypted_content"],
    )  # fmt: skip
    body = rig.upstream.seen[-1].body
    assert body["reasoning_effort"] == "low"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema, "strict": True},
    }
    assert body["max_completion_tokens"] == 40 and "max_tokens" not in body
    assert body["temperature"] == 0.2
    assert body["messages"][0] == {"role": "system", "content": "Answer in JSON."}
    assert body["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
    }
    assert "include" not in body and "input" not in body


def test_function_tools_come_back_as_function_calls(rig: GatewayRig) -> None:
    response = rig.client().responses.create(
        model="tools", input="Weather in Paris?", tools=[WEATHER], tool_choice="required"
    )  # type: ignore[list-item]
    call = response.output[0]
    assert call.type == "function_call"
    assert (call.name, call.call_id) == ("get_weather", "call_fake_1")
    assert json.loads(call.arguments) == {"city": TOOL_ARGUMENT}
    sent = rig.upstream.seen[-1].body
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "The weather in a city.",
                         "parameters": WEATHER["parameters"]},
        }
    ]  # fmt: skip
    assert sent["tool_choice"] == "required"


# ---------------------------------------------------------------------------------- streams


def test_stream_helper_with_a_function_call(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    with rig.client().responses.stream(
        model="tools",
        input="Weather?",
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    call = final.output[0]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": TOOL_ARGUMENT}
    assert final.usage is not None
    expected = cost_micros(PRICE, FAKE_USAGE)
    assert micros(final.usage.model_extra["cost"]) == expected  # type: ignore[index]
    assert charged(rig, before) == expected
    assert_ledger_ok(rig)


def test_create_stream_true_sends_the_text_events(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    events = list(rig.client().responses.create(model="chat", input="Say hello", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]  # type: ignore[union-attr]
    assert "".join(deltas) == "Hello from the fake upstream."
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1].response  # type: ignore[union-attr]
    assert completed.output_text == "Hello from the fake upstream."
    assert completed.model == "chat"
    assert micros(completed.usage.model_extra["cost"]) == cost_micros(PRICE, FAKE_USAGE)  # type: ignore[union-attr,index]
    assert charged(rig, before) == cost_micros(PRICE, FAKE_USAGE)
    # Stored: GET gives the same response, cost included.
    again = rig.client().responses.retrieve(completed.id)
    assert again.output_text == completed.output_text
    assert again.usage is not None and again.usage.model_extra == completed.usage.model_extra  # type: ignore[union-attr]
    assert_ledger_ok(rig)


def test_a_stream_over_an_upstream_without_usage_reports_the_estimate_charged(
    rig: GatewayRig,
) -> None:
    before = balance(rig).posted_micros
    events = list(rig.client().responses.create(model="nousage", input="Say hi", stream=True))
    completed = events[-1]
    assert completed.type == "response.completed"
    usage = completed.response.usage  # type: ignore[union-attr]
    assert usage is not None and usage.output_tokens > 0
    stored = records(rig)[-1]
    assert stored.usage_source == "estimated"
    assert micros(usage.model_extra["cost"]) == stored.price_micros > 0  # type: ignore[index]
    assert charged(rig, before) == stored.price_micros
    assert_ledger_ok(rig)


def test_a_cut_stream_ends_with_response_failed_and_charges_what_was_produced(
    rig: GatewayRig,
) -> None:
    before = balance(rig).posted_micros
    request_id, events = sse_events(rig, {"model": "nodone", "input": "Hi", "stream": True})
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "upstream_incomplete"
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "Hello from the fake upstream."
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    closed = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [item["status"] for item in closed] == ["incomplete"]
    assert events[-1]["response"]["output"][0]["status"] == "incomplete"
    stored = record(rig, request_id)
    assert stored.status == "upstream_incomplete"
    # The relay's rule: what was delivered is charged, from the upstream's own count.
    assert (stored.usage_source, stored.price_micros) == ("provider", 11 + 2 * 7)
    assert charged(rig, before) == 11 + 2 * 7
    # A failed answer is not stored.
    with rig.http() as http:
        assert http.get(f"/v1/responses/{events[0]['response']['id']}").status_code == 404
    assert_ledger_ok(rig)


def test_an_upstream_failing_mid_stream_ends_with_response_failed(rig: GatewayRig) -> None:
    before = balance(rig).posted_micros
    request_id, events = sse_events(rig, {"model": "malformed", "input": "Hi", "stream": True})
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"]["code"] == "upstream_failed"
    stored = record(rig, request_id)
    assert stored.status == "upstream_error_mid_stream"
    assert stored.price_micros > 0  # two chunks reached the client: estimated and charged
    assert charged(rig, before) == stored.price_micros
    assert_ledger_ok(rig)


def test_upstream_failure_before_any_byte_is_an_openai_error(rig: GatewayRig) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        rig.client().responses.create(model="fail500", input="Hi")
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_failed"  # type: ignore[index]
    assert balance(rig).posted_micros == 10_000_000
    assert_ledger_ok(rig)


# ------------------------------------------------------------- stored responses, continuing


def test_previous_response_id_continues_the_conversation(rig: GatewayRig) -> None:
    client = rig.client()
    before = balance(rig).posted_micros
    first = client.responses.create(model="tools", input="Weather?", tools=[WEATHER])  # type: ignore[list-item]
    call = first.output[0]
    assert call.type == "function_call"
    second = client.responses.create(
        model="tools",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.output_text == "The tool said: sunny."
    assert second.previous_response_id == first.id
    assert rig.upstream.seen[-1].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_fake_1", "type": "function",
             "function": {"name": "get_weather", "arguments": call.arguments}}]},
        {"role": "tool", "tool_call_id": "call_fake_1", "content": "sunny"},
    ]  # fmt: skip
    assert charged(rig, before) == 2 * cost_micros(PRICE, FAKE_USAGE)
    # A third turn carries both earlier ones.
    client.responses.create(model="chat", previous_response_id=second.id, input="Thanks")
    roles = [m["role"] for m in rig.upstream.seen[-1].body["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    assert_ledger_ok(rig)


def test_get_and_delete_a_stored_response(rig: GatewayRig) -> None:
    client = rig.client()
    created = client.responses.create(model="chat", input="Say hello")
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text
    assert fetched.usage is not None and created.usage is not None
    assert fetched.usage.model_extra == created.usage.model_extra
    with rig.http() as http:
        deleted = http.delete(f"/v1/responses/{created.id}")
        assert deleted.status_code == 200
        assert deleted.json() == {"id": created.id, "object": "response.deleted", "deleted": True}
        gone = http.get(f"/v1/responses/{created.id}")
        assert gone.status_code == 404
        assert gone.json()["error"]["type"] == "invalid_request_error"
        assert http.delete(f"/v1/responses/{created.id}").status_code == 404
        assert http.get("/v1/responses/resp_unknown").status_code == 404


def test_a_response_past_its_retention_is_gone_and_purged(rig: GatewayRig) -> None:
    client = rig.client()
    old = client.responses.create(model="chat", input="Say hello")
    kept = client.responses.create(model="chat", input="Say hello again")
    with db.session_scope(engine=rig.engine) as session:
        row = session.get(StoredResponse, old.id)
        assert row is not None
        row.created_at = utcnow() - timedelta(days=31)  # the default retention is 30 days
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(old.id)
    with pytest.raises(openai.NotFoundError):  # nor can a conversation continue from it
        client.responses.create(model="chat", previous_response_id=old.id, input="And?")
    assert dict(jobs.JOBS)["stored response expiry"]() == 1  # it, and only it, is deleted
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        assert session.get(StoredResponse, old.id) is None
    assert client.responses.retrieve(kept.id).id == kept.id


def test_store_false_keeps_nothing(rig: GatewayRig) -> None:
    created = rig.client().responses.create(model="chat", input="Say hello", store=False)
    assert created.store is False
    with rig.http() as http:
        assert http.get(f"/v1/responses/{created.id}").status_code == 404


def test_another_customers_response_is_not_found_before_any_hold(rig: GatewayRig) -> None:
    created = rig.client().responses.create(model="chat", input="Say hello")
    other_customer, other_account, other_key = rig.new_customer(1_000_000)
    upstream_calls = rig.upstream.count()
    with rig.http(other_key) as http:
        got = http.get(f"/v1/responses/{created.id}")
        assert got.status_code == 404
        assert "Hello" not in got.text
        assert http.delete(f"/v1/responses/{created.id}").status_code == 404
        cont = http.post(
            "/v1/responses",
            json={"model": "chat", "input": "More", "previous_response_id": created.id},
        )
        assert cont.status_code == 404
        assert cont.json()["error"]["code"] == "previous_response_not_found"
    assert rig.upstream.count() == upstream_calls
    assert balance(rig, other_account).posted_micros == 1_000_000
    assert [r.customer_id for r in records(rig)] == [rig.customer_id]
    # The owner still has it.
    assert rig.client().responses.retrieve(created.id).id == created.id
    assert other_customer != rig.customer_id
    assert_ledger_ok(rig)


# ------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "mcp", "server_label": "x", "server_url": "https://mcp.example.com"},
    ],
)
def test_builtin_tools_are_refused_before_any_hold(rig: GatewayRig, tool: dict[str, Any]) -> None:
    upstream_calls = rig.upstream.count()
    with rig.http() as http:
        refused = http.post(
            "/v1/responses", json={"model": "chat", "input": "Hi", "tools": [WEATHER, tool]}
        )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "unsupported_tool")
    assert tool["type"] in error["message"]
    assert rig.upstream.count() == upstream_calls
    assert records(rig) == []
    assert_ledger_ok(rig)


def test_bad_requests_get_openai_errors(rig: GatewayRig) -> None:
    with rig.http() as http:
        assert http.post("/v1/responses", content=b"{nope").json()["error"]["code"] == (
            "invalid_json"
        )
        missing = http.post("/v1/responses", json={"model": "nope", "input": "Hi"})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"
        bad_input = http.post("/v1/responses", json={"model": "chat", "input": 3})
        assert bad_input.status_code == 400
    with rig.http("sk-wrong") as http:
        unauthorized = http.post("/v1/responses", json={"model": "chat", "input": "Hi"})
        assert unauthorized.status_code == 401
        assert unauthorized.json()["error"]["type"] == "authentication_error"
    assert records(rig) == []


def test_a_client_leaving_mid_stream_is_settled_once(rig: GatewayRig) -> None:
    with rig.http().stream(
        "POST", "/v1/responses", json={"model": "slow", "input": "Hi", "stream": True}
    ) as response:
        request_id = response.headers["x-request-id"]
        for i, _line in enumerate(response.iter_lines()):
            if i > 20:
                break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not records(rig):
        time.sleep(0.1)
    stored = record(rig, request_id)
    assert stored.status == "client_disconnected"
    assert stored.price_micros > 0
    assert balance(rig).held_micros == 0
    assert 10_000_000 - balance(rig).posted_micros == stored.price_micros
    assert_ledger_ok(rig)


@pytest.mark.anyio
async def test_closing_the_rendered_stream_closes_the_relay() -> None:
    closed: list[bool] = []

    async def relay() -> AsyncIterator[bytes]:
        try:
            yield b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'
            yield b'data: {"choices": [{"index": 0, "delta": {"content": " there"}}]}\n\n'
        finally:
            closed.append(True)

    wire = ResponsesWire(response_shell("resp_1", "m", {}))
    call = SimpleNamespace(upstream_endpoint="chat", request_id="req_1")
    rendered = wire.render_stream(call, relay())  # type: ignore[arg-type]
    assert b"response.created" in await anext(rendered)
    assert b"response.output_text.delta" in await anext(rendered)
    await rendered.aclose()  # type: ignore[attr-defined]
    assert closed == [True]
