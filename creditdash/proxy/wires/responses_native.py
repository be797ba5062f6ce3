"""Responses requests passed through to a route that serves /v1/responses itself: the chat
view the core meters of the upstream's native answer.

The view keeps every native payload under "native" beside the chat fields the core reads:
an answer becomes a chat completion (its text, its usage, which the usage parser reads in
Responses names as well), and each streamed event a chat chunk (text deltas as content, the
ending event as the usage chunk, followed by the end marker the relay expects). A failed
native stream becomes the chat error event. ResponsesWire renders the native payloads back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from creditdash.proxy.call import Call
from creditdash.proxy.upstream import ResponseLike

ENDINGS = ("response.completed", "response.incomplete")
FAILURES = ("response.failed", "error")


def output_text(response: dict[str, Any]) -> str:
    """The text of a response object's message items."""
    texts = []
    for item in response.get("output") or []:
        for part in (item.get("content") or []) if isinstance(item, dict) else []:
            if isinstance(part, dict) and part.get("type") == "output_text":
                texts.append(str(part.get("text", "")))
    return "".join(texts)


def chat_completion(response: dict[str, Any]) -> dict[str, Any]:
    """A native response object as the chat completion the core meters."""
    finish = "length" if response.get("status") == "incomplete" else "stop"
    message = {"role": "assistant", "content": output_text(response)}
    completion: dict[str, Any] = {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "native": response,
    }
    if isinstance(response.get("usage"), dict):
        completion["usage"] = response["usage"]
    return completion


def chat_chunk(event: dict[str, Any]) -> bytes:
    """One native event as the relay's chat event (or events)."""
    kind = event.get("type")
    if kind in FAILURES:
        response = event.get("response")
        error = response.get("error") if isinstance(response, dict) else None
        return b"data: " + orjson.dumps({"error": error or event}) + b"\n\n"
    chunk: dict[str, Any] = {"choices": [], "native": event}
    if kind == "response.output_text.delta":
        chunk["choices"] = [{"index": 0, "delta": {"content": event.get("delta", "")}}]
    if kind in ENDINGS:
        response = event.get("response") or {}
        chunk["usage"] = response.get("usage") if isinstance(response, dict) else None
        return b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


class NativeView:
    """The upstream's native answer, read through as the chat view (a ResponseLike)."""

    def __init__(self, inner: ResponseLike) -> None:
        self._inner = inner
        self.status_code = inner.status_code

    async def aread(self) -> bytes:
        raw = await self._inner.aread()
        if self.status_code >= 400:
            return raw  # the upstream's own error, passed on
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw  # the core refuses what it cannot parse
        return orjson.dumps(chat_completion(data)) if isinstance(data, dict) else raw

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        rest = b""
        async for block in self._inner.aiter_bytes():
            *lines, rest = (rest + block).split(b"\n")
            out = []
            for line in lines:
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                try:
                    event = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    event = None
                if not isinstance(event, dict):
                    out.append(b"data: " + payload + b"\n\n")  # the relay refuses it
                    continue
                out.append(chat_chunk(event))
            if out:
                yield b"".join(out)

    async def aclose(self) -> None:
        await self._inner.aclose()


def view(_call: Call, response: ResponseLike) -> NativeView:
    return NativeView(response)
