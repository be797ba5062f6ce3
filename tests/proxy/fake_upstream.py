"""A fake OpenAI-compatible upstream on loopback whose behaviour is picked by the model name.

Served by uvicorn in a background thread, so the gateway talks to it over real TCP. Every
request it receives is recorded for assertions (what reached the upstream, and what did not).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
CACHED_USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 300,
    "total_tokens": 1300,
    "prompt_tokens_details": {"cached_tokens": 400},
    "completion_tokens_details": {"reasoning_tokens": 200},
}
WORDS = ["Hello", " from", " the", " fake", " upstream", "."]
# Usage objects of upstreams that misreport: far more output than the cap sent (a provider bug,
# or one that ignores max_tokens), and counts beyond 64-bit micros.
OVERCLAIMED_USAGE = {"prompt_tokens": 11, "completion_tokens": 100_000, "total_tokens": 100_011}
OVERFLOWING_USAGE = {"prompt_tokens": 2**63 - 1, "completion_tokens": 7, "total_tokens": 2**63 + 6}
# A prompt far larger than the request's bytes could be (as with images the hold did not know).
LARGE_PROMPT_USAGE = {"prompt_tokens": 5_000_000, "completion_tokens": 7, "total_tokens": 5_000_007}
MISREPORTED = {
    "overclaim": OVERCLAIMED_USAGE,
    "overflow": OVERFLOWING_USAGE,
    "large-prompt": LARGE_PROMPT_USAGE,
}


RETRY_AFTER = {"fail-429-retry": "7", "fail-429-date": "Wed, 21 Oct 2026 07:28:00 GMT"}


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeUpstream:
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    # Models whose request's connection the gateway closed before the answer (slow-3s).
    closed: list[str] = field(default_factory=list)
    # Requests being answered now, and the most at once (test_shared_limits.py); reset by hand.
    in_flight: int = 0
    max_in_flight: int = 0

    def count(self, model: str | None = None) -> int:
        return sum(1 for s in self.seen if model is None or s.body.get("model") == model)

    def app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            body = json.loads(await request.body())
            self.seen.append(Seen(request.url.path, dict(request.headers), body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                return await self._respond(request, body)
            finally:
                self.in_flight -= 1

        return Starlette(
            routes=[
                Route(path, handle, methods=["POST"])
                for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
            ]
        )

    async def _respond(self, request: Request, body: dict[str, Any]) -> Response:
        model = body.get("model", "")
        path = request.url.path
        if model in ENDINGS:
            return ENDINGS[model]({**body, "_auth": request.headers.get("authorization", "")})
        if model == "fail-500":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if model == "fail-401":
            return JSONResponse({"error": {"message": "Incorrect API key"}}, status_code=401)
        if model == "fail-429":
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429)
        # --- wire conformance: a provider's 429 with its Retry-After (seconds, HTTP-date)
        if model in RETRY_AFTER:
            return JSONResponse(
                {"error": {"message": "slow down"}},
                status_code=429,
                headers={"retry-after": RETRY_AFTER[model]},
            )
        # ---
        if model == "fail-400-echo":
            return JSONResponse(
                {
                    "error": {
                        "message": f"bad request; you sent {request.headers.get('authorization')}"
                        f" and api-key {request.headers.get('api-key')}"
                    }
                },
                status_code=400,
            )
        if model == "reasoning" and "max_tokens" in body:  # as reasoning models answer
            return JSONResponse(
                {"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with "
                           "this model. Use 'max_completion_tokens' instead.",
                           "type": "invalid_request_error", "param": "max_tokens",
                           "code": "unsupported_parameter"}},
                status_code=400,
            )  # fmt: skip
        if model == "hang":
            await asyncio.sleep(30)
        if model == "slow-ok":
            await asyncio.sleep(1.0)
        if model == "slow-3s" and await _waited_or_closed(request, 3.0):
            self.closed.append(model)
            return Response(status_code=499)
        if model == "redirect":
            return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)
        if path.endswith("/embeddings"):
            return JSONResponse(
                {"object": "list", "model": model, "usage": {"prompt_tokens": 8, "total_tokens": 8},
                 "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]}
            )  # fmt: skip
        if model in ("tool-call", "tool-call-fixed"):
            return _tool_call_answer(body, fixed=model == "tool-call-fixed")
        if body.get("stream"):
            return StreamingResponse(self._stream(model, body), media_type="text/event-stream")
        usage: dict[str, Any] | None = USAGE
        if model == "no-usage":
            usage = None
        elif model == "zero-usage":
            usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        elif model == "cached":
            usage = CACHED_USAGE
        elif model in MISREPORTED:
            usage = MISREPORTED[model]
        text = "".join(WORDS)
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            if path.endswith("/chat/completions")
            else {"index": 0, "text": text, "finish_reason": "stop"}
        )
        payload: dict[str, Any] = {"id": "fake-1", "object": "chat.completion", "created": 0,
                                   "model": model, "choices": [choice]}  # fmt: skip
        if usage is not None:
            payload["usage"] = usage
        return JSONResponse(payload)

    async def _stream(self, model: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": "fake-s", "object": "chat.completion.chunk", "created": 0, "model": model}
        count = 400 if model == "slow-stream" else len(WORDS)
        for i in range(count):
            delta = {"content": WORDS[i % len(WORDS)]}
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            if include:
                chunk["usage"] = None
            if model == "running-usage":  # usage on every chunk, growing (vLLM-style)
                chunk["usage"] = {"prompt_tokens": 11, "completion_tokens": i + 1,
                                  "total_tokens": 12 + i}  # fmt: skip
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            if model == "slow-stream":
                await asyncio.sleep(0.02)
            if model == "malformed-stream" and i == 1:
                yield b"data: {this is not json\n\n"
                return
        if include and model not in ("no-usage", "running-usage"):
            usage = MISREPORTED.get(model, USAGE)
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode()
        if model == "no-done":  # closes cleanly, without the end marker
            return
        yield b"data: [DONE]\n\n"


# --- slow-3s (idempotency tests): answers after 3 s, noting a connection closed before that.


async def _waited_or_closed(request: Request, seconds: float) -> bool:
    """Sleep seconds; True as soon as the client closed the connection instead."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(0.05)
    return False


TOOL_ARGUMENT = "Paris"
TOOL_ARGUMENTS = {"city": TOOL_ARGUMENT}  # for a tool whose one required argument is "city"


def _tool_call_answer(body: dict[str, Any], *, fixed: bool = False) -> Response:
    """Model "tool-call": with tools and no tool result yet, a call of the first tool (each
    required string argument set to TOOL_ARGUMENT); once a tool result came back, a text
    answer quoting it. Streamed when asked, with usage when asked. "tool-call-fixed" always
    passes TOOL_ARGUMENTS, whatever the tool's schema (an agent then reports a bad call back
    as the tool's result instead of running it)."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    tools = body.get("tools") or []
    base = {"id": "fake-t", "created": 0, "model": "tool-call"}
    if tools and last.get("role") != "tool":
        function = tools[0]["function"]
        schema = function.get("parameters") or {}
        arguments = json.dumps(
            TOOL_ARGUMENTS
            if fixed
            else {name: TOOL_ARGUMENT for name in schema.get("required", [])}
        )
        call = {"id": "call_fake_1", "type": "function",
                "function": {"name": function["name"], "arguments": arguments}}  # fmt: skip
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": f"The tool said: {last.get('content')}."}
        finish = "stop"
    if not body.get("stream"):
        choice = {"index": 0, "message": message, "finish_reason": finish}
        return JSONResponse({**base, "object": "chat.completion", "choices": [choice],
                             "usage": USAGE})  # fmt: skip
    chunks: list[dict[str, Any]] = []
    if message.get("tool_calls"):
        call = message["tool_calls"][0]
        half = len(call["function"]["arguments"]) // 2
        first = {"index": 0, "id": call["id"], "type": "function",
                 "function": {"name": call["function"]["name"], "arguments": ""}}  # fmt: skip
        chunks.append({"tool_calls": [first]})
        for piece in (call["function"]["arguments"][:half], call["function"]["arguments"][half:]):
            chunks.append({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    else:
        words = message["content"].split(" ")
        chunks += [{"content": (" " if i else "") + word} for i, word in enumerate(words)]
    events = [{**base, "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
              for delta in chunks]  # fmt: skip
    events.append({**base, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})  # fmt: skip
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": USAGE})
    text = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
    return Response(text, media_type="text/event-stream")


# ------------------------------------------------------------- endings (test_endings.py)
# Upstreams that end a request in one of the ways docs/contract.md section 7 lists. Each
# streams WORDS (or answers them whole) and then misbehaves as its name says.

ERROR_200_MESSAGE = "The model is overloaded; retry later."


def _chunk(model: str, delta: dict[str, Any], usage: Any = None) -> bytes:
    chunk: dict[str, Any] = {
        "id": "fake-e",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return f"data: {json.dumps(chunk)}\n\n".encode()  # fmt: skip


def _error_event(message: str) -> bytes:
    error = {"error": {"message": message, "type": "server_error", "code": None}}
    return f"data: {json.dumps(error)}\n\n".encode()


def _json_answer(body: dict[str, Any]) -> Response:
    """A plain chat completion, also to a stream request (some proxies answer so)."""
    if body.get("model") == "json-tools-to-stream":
        call = {
            "id": "call_json_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps(TOOL_ARGUMENTS)},
        }
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    else:
        message, finish = {"role": "assistant", "content": "".join(WORDS)}, "stop"
    return JSONResponse({"id": "fake-j", "object": "chat.completion", "created": 0,
                         "model": body.get("model"), "usage": USAGE,
                         "choices": [{"index": 0, "message": message,
                                      "finish_reason": finish}]})  # fmt: skip


def _error_200(body: dict[str, Any]) -> Response:
    """HTTP 200 whose body is only an error, stream or not; it echoes the upstream key."""
    auth = body.get("_auth", "")
    message = f"{ERROR_200_MESSAGE} (key {auth})"
    return JSONResponse({"error": {"message": message, "type": "server_error",
                                   "code": "overloaded"}})  # fmt: skip


async def _pause() -> None:
    await asyncio.sleep(0.05)  # the gateway reads what came so far


def _streamed(body: dict[str, Any]) -> Response:
    model = str(body.get("model"))

    async def events() -> AsyncIterator[bytes]:
        if model == "error-same-write":  # text and the error event in one write
            yield b"".join(_chunk(model, {"content": w}) for w in WORDS[:3]) + _error_event("x")
            return
        if model == "usage-then-error":  # running usage, then an error in the same write
            parts = [_chunk(model, {"content": w}, {"prompt_tokens": 11, "completion_tokens": i + 1,
                                                   "total_tokens": 12 + i})
                     for i, w in enumerate(WORDS[:3])]  # fmt: skip
            yield b"".join(parts) + _error_event("overloaded")
            return
        for word in WORDS[:3]:
            yield _chunk(model, {"content": word})
            await _pause()
        if model == "error-mid-stream":
            yield _error_event("overloaded")
        elif model == "cut-mid-stream":
            raise RuntimeError("the connection is cut")  # uvicorn drops it mid-body

    return StreamingResponse(events(), media_type="text/event-stream")


ENDINGS: dict[str, Any] = {
    "json-to-stream": _json_answer,
    "json-tools-to-stream": _json_answer,
    "error-200": _error_200,
    "error-mid-stream": _streamed,
    "error-same-write": _streamed,
    "usage-then-error": _streamed,
    "cut-mid-stream": _streamed,
}


class ServerThread:
    """uvicorn serving an ASGI app on a loopback port, in a daemon thread."""

    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.port = port

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
