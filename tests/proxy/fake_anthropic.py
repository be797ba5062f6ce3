"""A fake Anthropic Messages upstream on loopback whose behaviour is picked by the model name.

Served like fake_upstream.FakeUpstream (uvicorn in a thread, real TCP), at POST /v1/messages;
every request is recorded with its path and headers. The models:

- claude-text: a text answer; claude-tools: a tool_use answer (after a line of text);
- claude-cache: a text answer whose usage reads and writes the prompt cache;
- claude-overloaded: 529 overloaded_error before any byte of an answer;
- claude-invalid: 400 invalid_request_error (echoing the x-api-key, which must be redacted);
- claude-error-mid: a stream that sends some text, then an `error` event;
- claude-cut: a stream that sends some text and closes without message_stop.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.proxy.fake_upstream import Seen

TEXT = ["Hello", " from", " the", " fake", " Claude", "."]
USAGE = {"input_tokens": 13, "output_tokens": 6,
         "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}  # fmt: skip
CACHE_USAGE = {"input_tokens": 600, "cache_read_input_tokens": 400,
               "cache_creation_input_tokens": 100, "output_tokens": 300}  # fmt: skip
TOOL_INPUT = {"city": "Berlin", "unit": "celsius"}
TOOL_ID = "toolu_fake_01"


@dataclass
class FakeAnthropic:
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    def count(self, model: str | None = None) -> int:
        return sum(1 for s in self.seen if model is None or s.body.get("model") == model)

    def last(self, model: str) -> Seen:
        return [s for s in self.seen if s.body.get("model") == model][-1]

    def app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            body = json.loads(await request.body())
            self.seen.append(Seen(request.url.path, dict(request.headers), body))
            return self._respond(request, body)

        return Starlette(routes=[Route("/v1/messages", handle, methods=["POST"])])

    def _respond(self, request: Request, body: dict[str, Any]) -> Response:
        model = str(body.get("model", ""))
        if model == "claude-overloaded":
            return _error(529, "overloaded_error", "Overloaded")
        if model == "claude-invalid":
            key = request.headers.get("x-api-key")
            return _error(400, "invalid_request_error", f"messages: bad turn order (key {key})")
        if body.get("stream"):
            return StreamingResponse(_events(model), media_type="text/event-stream")
        content: list[dict[str, Any]] = [{"type": "text", "text": "".join(TEXT)}]
        stop = "end_turn"
        if model == "claude-tools":
            content = [{"type": "text", "text": "Let me look."},
                       {"type": "tool_use", "id": TOOL_ID, "name": "get_weather",
                        "input": TOOL_INPUT}]  # fmt: skip
            stop = "tool_use"
        return JSONResponse(
            {"id": "msg_fake_1", "type": "message", "role": "assistant", "model": model,
             "content": content, "stop_reason": stop, "stop_sequence": None,
             "usage": _usage(model)}
        )  # fmt: skip


def _usage(model: str) -> dict[str, int]:
    return dict(CACHE_USAGE if model == "claude-cache" else USAGE)


def _error(status: int, kind: str, message: str) -> JSONResponse:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=status)


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


async def _events(model: str) -> AsyncIterator[bytes]:
    usage = _usage(model)
    start = {**usage, "output_tokens": 1}
    yield _event("message_start", {"message": {
        "id": "msg_fake_s", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": start}})  # fmt: skip
    yield _event("ping", {})
    yield _event("content_block_start",
                 {"index": 0, "content_block": {"type": "text", "text": ""}})  # fmt: skip
    for i, word in enumerate(TEXT):
        yield _event("content_block_delta",
                     {"index": 0, "delta": {"type": "text_delta", "text": word}})  # fmt: skip
        if i == 2 and model == "claude-error-mid":
            yield _event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
            return
        if i == 2 and model == "claude-cut":
            return
    yield _event("content_block_stop", {"index": 0})
    stop = "end_turn"
    if model == "claude-tools":
        stop = "tool_use"
        yield _event("content_block_start", {"index": 1, "content_block": {
            "type": "tool_use", "id": TOOL_ID, "name": "get_weather", "input": {}}})  # fmt: skip
        text = json.dumps(TOOL_INPUT)
        for piece in (text[:9], text[9:20], text[20:]):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield _event("content_block_delta", {"index": 1, "delta": delta})
        yield _event("content_block_stop", {"index": 1})
    yield _event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                   "usage": {"output_tokens": usage["output_tokens"]}})  # fmt: skip
    yield _event("message_stop", {})
