"""The client wire of OpenAI's Responses API: the core's chat answer rendered as a response
object, or the relay's chat event stream rendered as the Responses event stream.

One ResponsesWire answers one request: it knows the response's id and request fields (its
shell), the conversation the request carried (for storing), and how to store the answer.
Errors keep OpenAI's shape, the base wire's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from creditdash.core.money import MICROS_PER_CREDIT
from creditdash.proxy.call import Call, Outcome
from creditdash.proxy.usage import cost_placeholder, usage_for_client, with_cost
from creditdash.proxy.wires.base import ClientWire
from creditdash.proxy.wires.responses_translate import ResponseEvents, response_object

log = logging.getLogger(__name__)

# Stores a finished answer: (request id, response object as sent, its output items).
Save = Callable[[str, bytes, list[dict[str, Any]]], Awaitable[None]]


class ResponsesWire(ClientWire):
    name = "responses"
    wants_usage = True

    def __init__(self, shell: dict[str, Any], save: Save | None = None) -> None:
        self.shell = shell
        self._save = save
        # Set by render_complete: what the route stores once the answer is settled.
        self.finished: tuple[str, bytes, list[dict[str, Any]]] | None = None

    def render_complete(
        self, call: Call, data: dict[str, Any], outcome: Outcome, price: int
    ) -> bytes:
        placeholder = cost_placeholder()
        usage = usage_for_client(data.get("usage"), outcome, placeholder)
        native = data.get("native")
        if isinstance(native, dict):  # the route answered in the Responses API itself
            response = self._own(native)
            response["usage"] = usage
        else:
            response = response_object(self.shell, data, usage, placeholder)
        body = with_cost(orjson.dumps(response), placeholder, price)
        self.finished = (call.request_id, body, response["output"])
        return body

    async def render_stream(self, call: Call, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The Responses events of the relay's chat stream. The relay is closed when this is
        closed (its finally block settles a client that left)."""
        if call.upstream_endpoint == "responses":
            async for piece in self._native_stream(call, events):
                yield piece
            return
        stream = ResponseEvents(dict(self.shell, output=[]))
        usage: dict[str, Any] = {}
        cost_micros: int | None = None
        rest = b""
        try:
            yield _sse(stream.start())
            async for block in events:
                *lines, rest = (rest + block).split(b"\n")
                out: list[dict[str, Any]] = []
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        yield _sse(out) + await self._ending(call, stream, usage, cost_micros)
                        return
                    chunk = orjson.loads(payload)
                    if isinstance(chunk.get("error"), dict):
                        out += stream.close("incomplete")
                        yield _sse([*out, stream.failed(chunk["error"])])
                        return
                    if isinstance(chunk.get("usage"), dict):
                        usage, cost_micros = _charged_usage(payload)
                    out += stream.chunk(chunk)
                if out:
                    yield _sse(out)
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    def _own(self, native: dict[str, Any]) -> dict[str, Any]:
        """A native response object under this response's id and public model name."""
        return {**native, "id": self.shell["id"], "model": self.shell["model"],
                "previous_response_id": self.shell.get("previous_response_id"),
                "store": self.shell.get("store", True)}  # fmt: skip

    async def _native_stream(
        self, call: Call, events: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        """The upstream's own Responses events (responses_native.py keeps them in the chat
        view), renumbered, under this response's id and model, the ending one with the cost."""
        sequence = 0
        rest = b""
        try:
            async for block in events:
                *lines, rest = (rest + block).split(b"\n")
                out = b""
                for line in lines:
                    payload = line[5:].strip() if line.startswith(b"data:") else b""
                    if not payload or payload == b"[DONE]":
                        continue
                    chunk = orjson.loads(payload)
                    if isinstance(chunk.get("error"), dict):
                        failed = ResponseEvents(dict(self.shell, output=[]), sequence)
                        out += _sse([failed.failed(chunk["error"])])
                        yield out
                        return
                    event = chunk.get("native")
                    if not isinstance(event, dict):
                        continue
                    event = {**event, "sequence_number": sequence}
                    sequence += 1
                    out += await self._native_event(call, event, chunk, payload)
                if out:
                    yield out
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    async def _native_event(
        self, call: Call, event: dict[str, Any], chunk: dict[str, Any], payload: bytes
    ) -> bytes:
        response = event.get("response")
        if not isinstance(response, dict):
            return _sse([event])
        event["response"] = self._own(response)
        if event.get("type") not in ("response.completed", "response.incomplete"):
            return _sse([event])
        placeholder = cost_placeholder()
        price = 0
        if isinstance(chunk.get("usage"), dict):
            usage, micros = _charged_usage(payload)
            event["response"]["usage"] = {**usage, "cost": placeholder}
            price = micros or 0
        if self._save is not None:
            stored = with_cost(orjson.dumps(event["response"]), placeholder, price)
            try:
                await self._save(call.request_id, stored, event["response"].get("output") or [])
            except Exception:  # the answer was metered and is delivered even if not stored
                log.exception("could not store response %s", self.shell.get("id"))
        return _frame(event["type"], with_cost(orjson.dumps(event), placeholder, price))

    async def _ending(
        self, call: Call, stream: ResponseEvents, usage: dict[str, Any], cost_micros: int | None
    ) -> bytes:
        """The closing events and the ending one, after storing the answer."""
        closing = _sse(stream.close())
        placeholder = cost_placeholder()
        final = stream.completed(usage, placeholder if cost_micros is not None else None)
        price = cost_micros or 0
        if self._save is not None:
            response = with_cost(orjson.dumps(final["response"]), placeholder, price)
            try:
                await self._save(call.request_id, response, final["response"]["output"])
            except Exception:  # the answer was metered and is delivered even if not stored
                log.exception("could not store response %s", self.shell.get("id"))
        event = with_cost(orjson.dumps(final), placeholder, price)
        return closing + _frame(final["type"], event)


def _charged_usage(payload: bytes) -> tuple[dict[str, Any], int | None]:
    """The usage chunk's usage and its cost in micros, read exactly (no float)."""
    usage = dict(orjson.loads(payload).get("usage") or {})
    usage.pop("cost", None)
    cost = (json.loads(payload, parse_float=Decimal).get("usage") or {}).get("cost")
    try:
        micros = int(Decimal(cost) * MICROS_PER_CREDIT) if cost is not None else None
    except (InvalidOperation, TypeError):
        micros = None
    return usage, micros


def _frame(kind: str, data: bytes) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


def _sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(_frame(event["type"], orjson.dumps(event)) for event in events)
