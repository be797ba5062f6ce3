"""The pure translations for Messages clients over chat upstreams, and the stream wrapper."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from creditdash.proxy import errors
from creditdash.proxy.wires import messages_translate as t
from creditdash.proxy.wires.messages import _messages_events

WEATHER = {
    "name": "get_weather",
    "description": "Weather.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def chat(**body: Any) -> dict[str, Any]:
    return t.messages_to_chat({"model": "m", "max_tokens": 10, **body})


# --------------------------------------------------------------------------------- requests


def test_system_string_or_blocks_becomes_the_first_message() -> None:
    blocks = [
        {"type": "text", "text": "One.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Two."},
    ]
    for system, text in (("Be brief.", "Be brief."), (blocks, "One.\n\nTwo.")):
        body = chat(system=system, messages=[{"role": "user", "content": "hi"}])
        assert body["messages"] == [
            {"role": "system", "content": text},
            {"role": "user", "content": "hi"},
        ]
    inline = chat(
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "text", "text": "Env."}]},
        ]
    )
    assert inline["messages"][1] == {"role": "system", "content": "Env."}


def test_max_tokens_is_required_except_for_counting() -> None:
    with pytest.raises(errors.GatewayError) as missing:
        t.messages_to_chat({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert missing.value.status == 400 and "max_tokens" in missing.value.message
    counted = t.messages_to_chat(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, require_max_tokens=False
    )
    assert "max_tokens" not in counted
    with pytest.raises(errors.GatewayError):
        chat(messages=[])
    with pytest.raises(errors.GatewayError):
        chat(messages=[{"role": "tool", "content": "x"}])


def test_sampling_fields_and_dropped_fields() -> None:
    body = chat(
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.2,
        top_p=0.9,
        top_k=3,
        stream=True,
        stop_sequences=["END", "STOP"],
        metadata={"user_id": "u"},
        thinking={"type": "enabled", "budget_tokens": 2048},
        context_management={"edits": []},
        output_config={"effort": "high"},
    )
    assert body == {
        "model": "m",
        "max_tokens": 10,
        "temperature": 0.2,
        "top_p": 0.9,
        "stream": True,
        "stop": ["END", "STOP"],
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_images_become_image_url_parts() -> None:
    body = chat(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/x.png"},
                    },
                ],
            }
        ]
    )
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
    ]


def test_tool_use_and_tool_result_turns() -> None:
    body = chat(
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Let me look."},
                    {
                        "type": "tool_use",
                        "id": "tu_1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                    {
                        "type": "tool_use",
                        "id": "tu_2",
                        "name": "get_weather",
                        "input": {"city": "Rome"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu_1",
                        "content": [
                            {"type": "text", "text": "-3 C"},
                            {"type": "image", "source": {"type": "url", "url": "https://x/map"}},
                        ],
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "tu_2",
                        "content": "down",
                        "is_error": True,
                    },
                    {"type": "text", "text": "And now?"},
                ],
            },
        ]
    )
    assistant, first, second, user = body["messages"][1:]
    assert assistant["content"] == "Let me look."
    assert [c["id"] for c in assistant["tool_calls"]] == ["tu_1", "tu_2"]
    assert orjson.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo"}
    assert first == {"role": "tool", "tool_call_id": "tu_1", "content": "-3 C"}
    assert second == {"role": "tool", "tool_call_id": "tu_2", "content": "Error: down"}
    # The text after the results, then the image the tool returned (tool messages are text).
    assert user["content"] == [
        {"type": "text", "text": "And now?"},
        {"type": "image_url", "image_url": {"url": "https://x/map"}},
    ]
    only_results = chat(
        messages=[
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "a", "content": "ok"}],
            }
        ]
    )
    assert only_results["messages"] == [{"role": "tool", "tool_call_id": "a", "content": "ok"}]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tools_and_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    server_tool = {"type": "web_search_20250305", "name": "web_search"}
    body = chat(
        messages=[{"role": "user", "content": "hi"}],
        tools=[WEATHER, server_tool],
        tool_choice=choice,
    )
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather.",
                "parameters": WEATHER["input_schema"],
            },
        }
    ]
    assert body["tool_choice"] == expected
    serial = chat(
        messages=[{"role": "user", "content": "hi"}],
        tools=[WEATHER],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert serial["parallel_tool_calls"] is False


def test_count_input_tokens_counts_tools_and_calls() -> None:
    plain = chat(messages=[{"role": "user", "content": "hello there"}])
    with_tools = chat(messages=[{"role": "user", "content": "hello there"}], tools=[WEATHER])
    assert 0 < t.count_input_tokens(plain) < t.count_input_tokens(with_tools)


# ---------------------------------------------------------------------------------- answers


def test_chat_completion_as_a_message() -> None:
    data = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        },
                        {
                            "id": "c2",
                            "type": "function",
                            "function": {"name": "x", "arguments": "{oops"},
                        },
                    ],
                },
            }
        ]
    }
    usage = t.answer_usage(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 400, "cache_write_tokens": 100},
        },
        0.5,
    )
    message = t.chat_to_message(data, message_id="msg_1", model="pub", usage=usage)
    assert message["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "c1", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "c2", "name": "x", "input": {}},
    ]
    assert (message["stop_reason"], message["stop_sequence"]) == ("tool_use", None)
    assert message["usage"] == {
        "input_tokens": 500,
        "cache_read_input_tokens": 400,
        "cache_creation_input_tokens": 100,
        "output_tokens": 30,
        "cost": 0.5,
    }
    assert (message["id"], message["model"], message["type"]) == ("msg_1", "pub", "message")
    assert t.message_id("req_abc") == "msg_abc"


def test_error_bodies_by_status() -> None:
    def kind(status: int) -> str:
        body = orjson.loads(t.error_body(status, "why"))
        assert body["type"] == "error" and body["error"]["message"] == "why"
        return str(body["error"]["type"])

    assert [kind(s) for s in (400, 401, 402, 403, 404, 413, 422, 429)] == [
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "invalid_request_error",
        "invalid_request_error",
        "rate_limit_error",
    ]
    assert [kind(s) for s in (500, 502, 503, 504, 529)] == [
        "api_error",
        "api_error",
        "overloaded_error",
        "api_error",
        "overloaded_error",
    ]


def test_upstream_error_bodies_in_anthropic_shape() -> None:
    native = b'{"type":"error","error":{"type":"invalid_request_error","message":"no"}}'
    assert t.upstream_error_body(400, native) == native
    wrapped = orjson.loads(t.upstream_error_body(422, b'{"error":{"message":"bad field"}}'))
    assert wrapped == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad field"},
    }
    garbage = orjson.loads(t.upstream_error_body(404, b"<html>"))
    assert garbage["error"]["type"] == "not_found_error"


# ---------------------------------------------------------------------------------- streams


def parse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in raw.decode().strip().split("\n\n"):
        event, data = block.split("\n")
        found.append((event.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return found


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_stream_text_then_tool_call_in_anthropic_order() -> None:
    stream = t.StreamTranslator("msg_1", "pub")
    call = {"index": 0, "id": "c1", "function": {"name": "get_weather", "arguments": ""}}
    out = b"".join(
        [
            stream.feed(chunk({"role": "assistant", "content": ""})),
            stream.feed(chunk({"content": "Hi"})),
            stream.feed(chunk({"content": "!"})),
            stream.feed(chunk({"tool_calls": [call]})),
            stream.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]})),
            stream.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":1}'}}]})),
            stream.feed(chunk({}, "tool_calls")),
            stream.feed(
                b'{"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":5,'
                b'"prompt_tokens_details":{"cached_tokens":8},"cost":0.000035}}'
            ),
            stream.feed(b"[DONE]"),
        ]
    )
    found = parse(out)
    assert [name for name, _ in found] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert found[0][1]["message"]["model"] == "pub" and found[0][1]["message"]["id"] == "msg_1"
    assert found[2][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert found[3][1]["delta"] == {"type": "text_delta", "text": "Hi"}
    assert found[6][1]["index"] == 1
    assert found[6][1]["content_block"] == {
        "type": "tool_use",
        "id": "c1",
        "name": "get_weather",
        "input": {},
    }
    assert found[8][1]["delta"] == {"type": "input_json_delta", "partial_json": 'ty":1}'}
    delta = found[10][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"] == {
        "input_tokens": 12,
        "cache_read_input_tokens": 8,
        "cache_creation_input_tokens": 0,
        "output_tokens": 5,
        "cost": 0.000035,
    }
    # The cost is the relay's own decimal text, not a float written again.
    assert b'"cost":0.000035}' in out
    assert stream.feed(chunk({"content": "late"})) == b""


def test_stream_errors_become_error_events() -> None:
    failed = t.StreamTranslator("msg_1", "pub")
    failed.feed(chunk({"content": "Hi"}))
    relay_error = b'{"error":{"message":"The upstream failed.","type":"upstream_error"}}'
    ((name, data),) = parse(failed.feed(relay_error))
    assert (name, data) == (
        "error",
        {"type": "error", "error": {"type": "api_error", "message": "The upstream failed."}},
    )
    assert failed.close() == b""
    cut = t.StreamTranslator("msg_2", "pub")
    cut.feed(chunk({"content": "Hi"}))
    assert [name for name, _ in parse(cut.close())] == ["error"]
    empty = t.StreamTranslator("msg_3", "pub")
    assert [name for name, _ in parse(empty.close())] == ["message_start", "ping", "error"]


def test_closing_the_wrapper_closes_the_relay() -> None:
    closed: list[bool] = []

    async def relay() -> AsyncIterator[bytes]:
        try:
            yield b"data: " + chunk({"content": "Hi"}) + b"\n\n"
            yield b"data: " + chunk({"content": " there"}) + b"\n\n"
        finally:
            closed.append(True)

    async def run() -> bytes:
        wrapper = _messages_events(t.StreamTranslator("msg_1", "pub"), relay())
        first = await wrapper.__anext__()
        await wrapper.aclose()  # type: ignore[attr-defined]
        return first

    first = asyncio.run(run())
    assert b"message_start" in first and b"text_delta" in first
    assert closed == [True]
