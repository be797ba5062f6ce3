"""The upstream wire of Anthropic-kind providers: the core's chat call sent as a Messages request,
and the Messages answer (whole or streamed) read back as the chat view the core meters.

A chat request is translated (anthropic_translate.chat_to_messages_request); a Messages client's
request, when its wire passes it natively, is sent as it is with the held output cap. Either way
the upstream answers in Messages' shape, so the answer is always given to the core as chat: a
chat completion with usage in the hub shape (cache reads and writes included), or a chat event
stream that follows the relay's rules (streaming.py): usage in the last chunk before `[DONE]`,
an `error` event as a chat error event, and no `[DONE]` when the upstream never said
message_stop. A 4xx a chat client caused reaches it in OpenAI's error shape.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from creditdash.catalog.models import ANTHROPIC_VERSION
from creditdash.proxy.call import Call
from creditdash.proxy.snapshot import RouteTarget
from creditdash.proxy.upstream import ResponseLike
from creditdash.proxy.wires import anthropic_translate as translate
from creditdash.proxy.wires.base import UpstreamWire, native_body

# One event line longer than this is a broken stream (the relay's own limit is 4 MiB).
MAX_EVENT_BYTES = 4 * 1024 * 1024


class AnthropicUpstream(UpstreamWire):
    """Calls Anthropic's Messages API (POST {base_url}/messages, base_url ending in /v1)."""

    name = "anthropic"
    PATHS = {"messages": "/messages"}

    def endpoint(self, call: Call, route: RouteTarget) -> str | None:
        """Messages for chat calls (translated) and for Messages clients (native); None for
        completions and embeddings, which Messages cannot serve."""
        if self.native(call, route) is not None or call.endpoint == "chat":
            return "messages"
        return None

    def native_endpoints(self, route: RouteTarget) -> frozenset[str]:
        return frozenset({"messages"})

    def headers(self, route: RouteTarget) -> dict[str, str]:
        headers = {
            **route.extra_headers,
            "content-type": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        if route.api_key:
            headers["x-api-key"] = route.api_key
        return headers

    def body(self, call: Call, route: RouteTarget) -> bytes:
        native = self.native(call, route)
        if native is not None:
            return orjson.dumps(native_body(call, native, route))
        body = translate.chat_to_messages_request(call.body, model=route.upstream_model)
        body.pop("stream", None)
        if call.stream:
            body["stream"] = True
        return orjson.dumps(body)

    def view(self, call: Call, route: RouteTarget, response: ResponseLike) -> ResponseLike:
        """The chat view of a Messages answer. An error status is left as it is for a client
        that spoke Messages natively, and put in OpenAI's error shape for a chat client."""
        if response.status_code >= 400:
            if self.native(call, route) is not None:
                return response
            return ChatErrorView(response)
        if call.stream:
            return ChatStreamView(response)
        return ChatCompletionView(response)


ANTHROPIC_UPSTREAM = AnthropicUpstream()


class _View:
    """A ResponseLike over the upstream's response: same status, translated body."""

    def __init__(self, response: ResponseLike) -> None:
        self.status_code = response.status_code
        self._response = response

    async def aread(self) -> bytes:
        return await self._response.aread()

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self._response.aiter_bytes()

    async def aclose(self) -> None:
        await self._response.aclose()


class ChatErrorView(_View):
    """An upstream error answer in OpenAI's error shape."""

    async def aread(self) -> bytes:
        return translate.chat_error_body(await self._response.aread(), self.status_code)


class ChatCompletionView(_View):
    """A whole Messages answer as a chat completion. A 2xx body that is not a Messages answer
    reads as empty, which the core answers as an upstream failure and charges nothing for."""

    async def aread(self) -> bytes:
        raw = await self._response.aread()
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(message, dict) or message.get("type") != "message":
            return b""
        completion = translate.messages_to_chat_completion(message)
        completion["created"] = int(time.time())
        return orjson.dumps(completion)


class ChatStreamView(_View):
    """A Messages event stream as the chat event stream the relay reads."""

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self._translated()

    async def _translated(self) -> AsyncIterator[bytes]:
        chunks = StreamTranslator()
        rest = b""
        async for block in self._response.aiter_bytes():
            *lines, rest = (rest + block).split(b"\n")
            if len(rest) > MAX_EVENT_BYTES:
                yield _error_event({"type": "api_error", "message": "An event was too long."})
                return
            out: list[bytes] = []
            for line in lines:
                event = chunks.feed(line)
                if chunks.finished:
                    # The last event leaves on its own: the relay stops at an error event, and
                    # what came before it in the same read must still reach the client.
                    if out:
                        yield b"".join(out)
                    yield event
                    return
                if event:
                    out.append(event)
            if out:
                yield b"".join(out)


def _error_event(error: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps({"error": translate.chat_error(error)}) + b"\n\n"


class StreamTranslator:
    """Messages stream events in, chat chunk events out, one `data:` line at a time.

    Text deltas become content deltas, a tool_use block becomes a tool call (its id and name
    first, then its input JSON in pieces), thinking becomes reasoning_content. message_delta
    gives the finish reason and the final usage (a finish chunk, then a usage chunk with no
    choices); message_stop gives `[DONE]`. An `error` event ends the stream with a chat error
    event; the relay then stops reading.
    """

    def __init__(self) -> None:
        self.finished = False
        self._base: dict[str, Any] = {"id": "", "object": "chat.completion.chunk",
                                      "created": int(time.time()), "model": ""}  # fmt: skip
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # content block index -> tool call index

    def feed(self, line: bytes) -> bytes:
        """What one line of the upstream's stream becomes (often nothing)."""
        if self.finished or not line.startswith(b"data:"):
            return b""  # event names, blank lines and comments: the data says its type
        try:
            event = orjson.loads(line[5:].strip())
        except orjson.JSONDecodeError:
            self.finished = True
            return _error_event({"type": "api_error", "message": "The stream was malformed."})
        if not isinstance(event, dict):
            return b""
        kind = event.get("type")
        if kind == "message_start":
            return self._start(event.get("message"))
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "message_stop":
            self.finished = True
            return b"data: [DONE]\n\n"
        if kind == "error":
            self.finished = True
            return _error_event(event.get("error") or {})
        return b""  # ping, content_block_stop, and event types added later

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return b"data: " + orjson.dumps({**self._base, "choices": [choice]}) + b"\n\n"

    def _start(self, message: Any) -> bytes:
        message = message if isinstance(message, dict) else {}
        self._base["id"] = str(message.get("id") or "")
        self._base["model"] = str(message.get("model") or "")
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._usage.update(usage)
        return self._chunk({"role": "assistant", "content": ""})

    def _block_start(self, event: dict[str, Any]) -> bytes:
        block = event.get("content_block")
        block = block if isinstance(block, dict) else {}
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return self._chunk({"content": str(block["text"])})
        if kind == "tool_use":
            index = len(self._tools)
            self._tools[_index(event)] = index
            function = {"name": str(block.get("name") or ""), "arguments": ""}
            call = {"index": index, "id": str(block.get("id") or ""), "type": "function",
                    "function": function}  # fmt: skip
            out = self._chunk({"tool_calls": [call]})
            given = block.get("input")
            if isinstance(given, dict) and given:  # an input given whole, not in deltas
                out += self._arguments(index, orjson.dumps(given).decode())
            return out
        return b""

    def _arguments(self, index: int, text: str) -> bytes:
        return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": text}}]})

    def _block_delta(self, event: dict[str, Any]) -> bytes:
        delta = event.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        kind = delta.get("type")
        if kind == "text_delta":
            return self._chunk({"content": str(delta.get("text") or "")})
        if kind == "input_json_delta":
            index = self._tools.get(_index(event))
            if index is None or not delta.get("partial_json"):
                return b""
            return self._arguments(index, str(delta["partial_json"]))
        if kind == "thinking_delta":
            return self._chunk({"reasoning_content": str(delta.get("thinking") or "")})
        return b""  # signature_delta and others: nothing a chat client reads

    def _message_delta(self, event: dict[str, Any]) -> bytes:
        usage = event.get("usage")
        if isinstance(usage, dict):
            # Anthropic's counts here are cumulative; a missing one keeps message_start's.
            self._usage.update({k: v for k, v in usage.items() if v is not None})
        delta = event.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        finish = self._chunk({}, translate.finish_reason(stop))
        usage_chunk = {**self._base, "choices": [], "usage": translate.hub_usage(self._usage)}
        return finish + b"data: " + orjson.dumps(usage_chunk) + b"\n\n"


def _index(event: dict[str, Any]) -> int:
    index = event.get("index")
    return index if isinstance(index, int) else -1
