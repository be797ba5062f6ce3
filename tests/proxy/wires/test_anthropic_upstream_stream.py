"""The Anthropic upstream wire without the network: the Messages event stream as chat events,
error bodies, and a Messages client's request passed through natively."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from creditdash.catalog.prices import Price
from creditdash.proxy.auth import KeyInfo
from creditdash.proxy.call import Call, NativeRequest
from creditdash.proxy.snapshot import ModelEntry, RouteTarget
from creditdash.proxy.wires import UPSTREAM_WIRES, anthropic_translate, upstream_wire
from creditdash.proxy.wires.anthropic_upstream import (
    ANTHROPIC_UPSTREAM,
    ChatErrorView,
    StreamTranslator,
)

PRICE = Price(1_000_000, 2_000_000, 500_000)


def sse(kind: str, **data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def route() -> RouteTarget:
    return RouteTarget(1, "claude", "anthropic", "https://api.example.com/v1", "sk-ant-key", 30,
                       {"x-extra": "1"}, "claude-up", 1, 1, PRICE)  # fmt: skip


def call(endpoint: str = "chat", streamed: bool = False, **body: Any) -> Call:
    started = time.perf_counter()
    return Call(
        request_id="req_test",
        endpoint=endpoint,
        key=KeyInfo("key_1", "cus_1", 1, None, None, None, None),
        model=ModelEntry("claude", PRICE, 100, (), 0),
        body={"model": "claude", "messages": [{"role": "user", "content": "hi"}], **body},
        stream=streamed,
        wants_usage=False,
        started=started,
        deadline=started + 30,
        output_cap=100,
    )


class Canned:
    """A ResponseLike with a fixed status and body, given whole or in the pieces given."""

    def __init__(self, status: int, *pieces: bytes) -> None:
        self.status_code = status
        self._pieces = pieces
        self.closed = False

    async def aread(self) -> bytes:
        return b"".join(self._pieces)

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece

    async def aclose(self) -> None:
        self.closed = True


async def chat_events(*pieces: bytes) -> list[bytes]:
    viewed = ANTHROPIC_UPSTREAM.view(call(streamed=True), route(), Canned(200, *pieces))
    return [block async for block in viewed.aiter_bytes()]


def payloads(blocks: list[bytes]) -> list[Any]:
    lines = b"".join(blocks).split(b"\n\n")
    return [line[6:] if line == b"data: [DONE]" else orjson.loads(line[6:])
            for line in lines if line]  # fmt: skip


def test_the_wire_is_registered_for_both_anthropic_kinds() -> None:
    assert upstream_wire("anthropic") is ANTHROPIC_UPSTREAM
    assert upstream_wire("anthropic-sandbox") is ANTHROPIC_UPSTREAM
    assert UPSTREAM_WIRES["openai"] is not ANTHROPIC_UPSTREAM


def test_headers_path_and_endpoints() -> None:
    wire = ANTHROPIC_UPSTREAM
    headers = wire.headers(route())
    assert headers == {"x-extra": "1", "content-type": "application/json",
                       "anthropic-version": "2023-06-01", "x-api-key": "sk-ant-key"}  # fmt: skip
    assert wire.path("messages") == "/messages"
    assert wire.endpoint(call(), route()) == "messages"
    assert wire.endpoint(call("completions"), route()) is None
    assert wire.endpoint(call("embeddings"), route()) is None
    assert wire.native_endpoints(route()) == {"messages"}


@pytest.mark.anyio
async def test_a_native_messages_request_passes_as_it_is_with_the_held_cap() -> None:
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    turns = [{"role": "user", "content": "hi"}]
    client_body = {"model": "claude", "max_tokens": 4000, "system": system, "messages": turns,
                   "metadata": {"x": 1}}  # fmt: skip
    native = NativeRequest("messages", client_body, view=lambda _c, r: r, cap_field="max_tokens")
    passed = call(max_tokens=100)
    passed.native = native
    wire = ANTHROPIC_UPSTREAM
    assert wire.endpoint(passed, route()) == "messages"
    sent = orjson.loads(wire.body(passed, route()))
    assert sent == {**client_body, "model": "claude-up", "max_tokens": 100}
    # The answer is a Messages answer either way: the core still gets its chat view.
    answer = {"id": "msg_1", "type": "message", "model": "claude-up", "stop_reason": "end_turn",
              "content": [{"type": "text", "text": "Hi."}],
              "usage": {"input_tokens": 5, "output_tokens": 2}}  # fmt: skip
    viewed = wire.view(passed, route(), Canned(200, orjson.dumps(answer)))
    completion = orjson.loads(await viewed.aread())
    assert completion["choices"][0]["message"]["content"] == "Hi."
    assert completion["usage"]["prompt_tokens"] == 5
    # A native client gets the upstream's error as it is, in its own API's shape.
    error = Canned(400, b'{"type":"error","error":{"type":"invalid_request_error","message":"x"}}')
    assert wire.view(passed, route(), error) is error


def test_a_chat_request_is_translated_with_the_route_model_and_stream_flag() -> None:
    streamed = call(streamed=True, stream=True, stream_options={"include_usage": True},
                    max_tokens=100)  # fmt: skip
    sent = orjson.loads(ANTHROPIC_UPSTREAM.body(streamed, route()))
    assert sent == {"model": "claude-up", "max_tokens": 100, "stream": True,
                    "messages": [{"role": "user", "content": [{"type": "text",
                                                               "text": "hi"}]}]}  # fmt: skip
    whole = orjson.loads(ANTHROPIC_UPSTREAM.body(call(max_tokens=100), route()))
    assert "stream" not in whole


@pytest.mark.anyio
async def test_a_text_stream_becomes_chat_chunks_usage_and_done() -> None:
    blocks = await chat_events(
        sse("message_start", message={"id": "msg_1", "model": "claude-up",
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 1}}),
        sse("ping") + sse("content_block_start", index=0, content_block={"type": "text",
                                                                         "text": ""}),
        sse("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hel"})[:30],
        sse("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hel"})[30:],
        sse("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "h"}),
        sse("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "s"}),
        sse("content_block_stop", index=0),
        sse("message_delta", delta={"stop_reason": "max_tokens"}, usage={"output_tokens": 7}),
        sse("message_stop"),
        sse("ping"),  # after the end: never read
    )  # fmt: skip
    events = payloads(blocks)
    assert events[-1] == b"[DONE]" and blocks[-1] == b"data: [DONE]\n\n"
    first, text, thinking, finish, usage = events[:-1]
    assert first["id"] == "msg_1" and first["model"] == "claude-up"
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert text["choices"][0]["delta"] == {"content": "Hel"}
    assert thinking["choices"][0]["delta"] == {"reasoning_content": "h"}
    assert finish["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 15, "completion_tokens": 7, "total_tokens": 22,
                              "prompt_tokens_details": {"cached_tokens": 5,
                                                        "cache_write_tokens": 0}}  # fmt: skip


@pytest.mark.anyio
async def test_tool_use_blocks_become_indexed_tool_calls() -> None:
    blocks = await chat_events(
        sse("message_start", message={"id": "m", "model": "c", "usage": {"input_tokens": 3}}),
        sse("content_block_start", index=0, content_block={"type": "tool_use", "id": "t1",
                                                           "name": "a", "input": {}}),
        sse("content_block_delta", index=0, delta={"type": "input_json_delta",
                                                   "partial_json": '{"x": '}),
        sse("content_block_delta", index=0, delta={"type": "input_json_delta",
                                                   "partial_json": "1}"}),
        sse("content_block_start", index=1, content_block={"type": "tool_use", "id": "t2",
                                                           "name": "b", "input": {"y": 2}}),
        sse("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 9}),
        sse("message_stop"),
    )  # fmt: skip
    events = payloads(blocks)[1:-2]
    calls = [e["choices"][0]["delta"].get("tool_calls") for e in events]
    assert calls[0] == [{"index": 0, "id": "t1", "type": "function",
                         "function": {"name": "a", "arguments": ""}}]  # fmt: skip
    assert calls[1] == [{"index": 0, "function": {"arguments": '{"x": '}}]
    assert calls[2] == [{"index": 0, "function": {"arguments": "1}"}}]
    assert calls[3][0]["index"] == 1 and calls[3][0]["id"] == "t2"
    assert calls[4] == [{"index": 1, "function": {"arguments": '{"y":2}'}}]
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.anyio
async def test_an_error_event_ends_the_stream_alone_and_a_cut_stream_has_no_done() -> None:
    start = sse("message_start", message={"id": "m", "model": "c", "usage": {}})
    text = sse("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hi"})
    error = sse("error", error={"type": "overloaded_error", "message": "Overloaded"})
    blocks = await chat_events(start + text + error + sse("message_stop"))
    # The text leaves before the error, in its own write: the relay stops at the error.
    assert len(blocks) == 2
    assert payloads(blocks[:1])[1]["choices"][0]["delta"] == {"content": "Hi"}
    assert payloads(blocks[1:]) == [{"error": {"message": "Overloaded", "type": "server_error",
                                               "code": "overloaded_error"}}]  # fmt: skip
    cut = payloads(await chat_events(start, text))
    assert b"[DONE]" not in cut and all("error" not in e for e in cut)
    broken = payloads(await chat_events(start, b"data: {not json\n\n"))
    assert broken[-1]["error"]["code"] == "api_error"


def test_the_translator_ignores_lines_that_are_not_data() -> None:
    chunks = StreamTranslator()
    assert chunks.feed(b"event: ping") == b"" and chunks.feed(b"") == b""
    assert chunks.feed(b": a comment") == b""
    assert chunks.feed(b'data: {"type": "something_new"}') == b""
    assert not chunks.finished


@pytest.mark.anyio
async def test_error_bodies_reach_chat_clients_in_openais_shape() -> None:
    body = b'{"type":"error","error":{"type":"rate_limit_error","message":"Slow down"}}'
    viewed = ANTHROPIC_UPSTREAM.view(call(), route(), Canned(429, body))
    assert isinstance(viewed, ChatErrorView) and viewed.status_code == 429
    assert orjson.loads(await viewed.aread()) == {
        "error": {"message": "Slow down", "type": "rate_limit_error", "code": "rate_limit_error"}
    }
    plain = anthropic_translate.chat_error_body(b"Bad Gateway", 413)
    assert orjson.loads(plain) == {"error": {"message": "Bad Gateway",
                                             "type": "invalid_request_error",
                                             "code": "request_too_large"}}  # fmt: skip
    await viewed.aclose()


@pytest.mark.anyio
async def test_a_whole_answer_that_is_not_a_message_reads_as_empty() -> None:
    for body in (b"<html>oops</html>", b'{"usage": {"input_tokens": 9}}'):
        viewed = ANTHROPIC_UPSTREAM.view(call(), route(), Canned(200, body))
        assert await viewed.aread() == b""  # the core answers 502 and charges nothing
