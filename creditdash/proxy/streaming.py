"""A streamed answer: the upstream's events relayed as they come, and metered once at the end.

The relay claims the request's Settlement when it starts, and from then on every ending of the
stream is its own: the end marker, an upstream error or a broken stream, the request's budget
running out, and the client leaving (its finally block). MeteredStream covers the one ending
the relay cannot see: the client leaving before Starlette ever starts the relay. Neither needs
the Gateway: they get the Settlement and a callback that releases the key's slot and the
upstream connection. The chunk handling (what a usage chunk looks like, what is relayed as is)
is the OpenAI wire's, kept in the small functions at the end; a client of another API gets
the relay's events through its wire's render_stream (wires/base.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
from starlette.responses import StreamingResponse

from creditdash.core.money import format_credits
from creditdash.proxy import errors, tokens
from creditdash.proxy.call import Call, Outcome, client_left, ms_since
from creditdash.proxy.settlement import Settlement, SettlementFailed
from creditdash.proxy.upstream import ResponseLike
from creditdash.proxy.usage import (
    bounded_outcome,
    cost_placeholder,
    usage_for_client,
    usage_of,
    with_cost,
)
from creditdash.proxy.wires.base import OPENAI, ClientWire

MAX_SSE_LINE_BYTES = 4 * 1024 * 1024


class MeteredStream(StreamingResponse):
    """A streamed answer whose hold is settled even if the client leaves before it starts.

    If the client disconnects before the first chunk, Starlette may never start the relay
    generator, so its finally block would never run; this wrapper then wins the claim the relay
    never made, voids the hold and releases.
    """

    def __init__(
        self, settlement: Settlement, upstream: ResponseLike, release: Callable[[], None]
    ) -> None:
        call = settlement.call
        wire = call.wire if isinstance(call.wire, ClientWire) else OPENAI
        super().__init__(
            wire.render_stream(call, relay(settlement, upstream, release)),
            media_type="text/event-stream",
            headers=stream_headers(call.request_id, settlement.available_micros),
        )
        self._settlement = settlement
        self._release = release

    async def _stream_until_disconnect(self, receive: Any, send: Any) -> None:
        """Send the answer while a plain task listens for the client leaving.

        What Starlette's StreamingResponse does with an anyio task group (two tasks and a
        cancel scope per answer, about 0.3 ms of CPU per stream here), with one task: on
        http.disconnect the listener cancels this task, whose cancellation is then absorbed
        here, and the relay is closed at once so its finally block settles what was produced.
        Any other cancellation (server shutdown) is passed on.
        """
        streaming = asyncio.current_task()
        assert streaming is not None
        gone = False

        async def listen() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            streaming.cancel()

        listener = asyncio.get_running_loop().create_task(listen())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            # Closed now in every case (a disconnect or a shutdown), not whenever the garbage
            # collector gets to it: its finally block settles what was produced.
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
            if not gone or streaming.uncancel() > 0:
                raise
        finally:
            listener.cancel()

    async def stream_response(self, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        ended = False
        async for chunk in self.body_iterator:
            # The relay marks its last piece, which then ends the body in the same write
            # (uvicorn writes every body message at once: one write less per stream).
            ended = isinstance(chunk, _LastChunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self._stream_until_disconnect(receive, send)
        finally:
            # Loses to the relay whenever the relay started; then the relay released.
            if self._settlement.void_detached(client_left()):
                self._release()


def stream_headers(request_id: str, available: int | None) -> dict[str, str]:
    """A stream's headers: its id, no caching or buffering on the way (x-accel-buffering: a
    buffering proxy in front, nginx, passes each event on at once instead of collecting the
    answer first), and the credits available after its hold (x-credits-available)."""
    headers = {"x-request-id": request_id, "cache-control": "no-cache", "x-accel-buffering": "no"}
    if available is not None:
        headers["x-credits-available"] = format_credits(available)
    return headers


async def relay(
    settlement: Settlement, response: ResponseLike, release: Callable[[], None]
) -> AsyncIterator[bytes]:
    """Relay the upstream's events and settle exactly once: at the end of the stream, on an
    upstream failure, or (from a detached task) when the client goes away.

    Events are forwarded as the upstream wrote them, a network read at a time. The latest
    chunk that carries usage is held back until the next one arrives; the last of them is
    rewritten at the end with the cost (or dropped if the client did not ask for usage)."""
    if not settlement.claim():  # MeteredStream voided first; it also released
        return
    call = settlement.call
    # Set before each settlement is awaited: if the request is cancelled while the settlement
    # runs in its thread, the thread still completes it, and the finally block must not settle.
    settled = False
    lines = _SSELines()
    public = PublicModel(call.model.name)
    payloads: list[bytes] = []  # what was relayed, parsed again only to estimate usage
    usage_chunk: dict[str, Any] | None = None
    try:
        budget_s = max(0.0, call.deadline - time.perf_counter())
        async with asyncio.timeout(budget_s):
            async for block in response.aiter_bytes():
                if call.ttfb_ms is None:
                    call.ttfb_ms = ms_since(call.started)
                out: list[bytes] = []
                for payload in lines.feed(block):
                    if payload == b"[DONE]":
                        lines.done = True
                        break
                    try:
                        chunk = _parse_chunk(payload)
                    except _StreamProblem:
                        # What came before the bad event in this read is delivered first: the
                        # estimate charges the relayed text, so the client must have it all.
                        if out:
                            yield b"".join(out)
                        raise
                    if usage_chunk is not None:  # it was not the last: pass it on as is
                        out += _intermediate(call, usage_chunk)
                        usage_chunk = None
                    payload = public(payload, chunk)
                    payloads.append(payload)
                    if isinstance(chunk.get("usage"), dict):
                        usage_chunk = chunk
                    else:
                        out.append(b"data: " + payload + b"\n\n")
                if out:
                    yield b"".join(out)
                if lines.done:
                    break
        if not lines.done:
            # Closed cleanly but without [DONE]: the answer may be cut short, and the client
            # must be able to tell (no [DONE] from us either).
            raise _StreamIncomplete()
        usage: dict[str, Any] = usage_chunk["usage"] if usage_chunk is not None else {}
        tokens_used, source = usage_of(call, usage or None, lambda: _produced_text(payloads))
        outcome = bounded_outcome(call, "ok", 200, tokens_used, source, True)
        settled = True
        price = await settlement.settle(outcome)
        final = None
        if usage_chunk is not None:
            final = _usage_chunk(call, usage_chunk, usage, outcome, price)
        elif call.wants_usage:
            # Asked for (or needed by the client's wire) but not sent: the estimate charged,
            # marked as one, in the usage chunk the client expects.
            final = _usage_chunk(call, _bare_chunk(call, payloads), {}, outcome, price)
        # The usage chunk and the end marker leave in one write.
        yield _LastChunk((final or b"") + b"data: [DONE]\n\n")
    except (httpx.HTTPError, _StreamProblem, SettlementFailed, TimeoutError) as problem:
        incomplete = isinstance(problem, _StreamIncomplete)
        held = b""
        if not settled:
            settled = True
            text = _produced_text(payloads)
            # Usage the upstream sent before it stopped is its own count of what it did.
            seen = usage_chunk["usage"] if usage_chunk is not None else None
            if usage_chunk is not None:  # its text is charged, so the client gets it
                held = b"".join(_without_usage(usage_chunk))
            tokens_used, source = usage_of(call, seen, lambda: text)
            status = "upstream_incomplete" if incomplete else "upstream_error_mid_stream"
            failed = bounded_outcome(call, status, 502, tokens_used, source, bool(text))
            await settlement.settle(failed)
        timed_out = isinstance(problem, httpx.TimeoutException | TimeoutError)
        if incomplete:
            error = errors.upstream_incomplete()
        elif isinstance(problem, SettlementFailed):
            error = errors.metering_failed()
        else:
            error = errors.upstream_timeout() if timed_out else errors.upstream_failed()
        yield _LastChunk(
            held + b"data: " + errors.error_body(error.message, error.type, error.code) + b"\n\n"
        )
    finally:
        if not settled:
            # The client went away mid-stream: charge what was produced, once, from a task
            # this cancelled generator cannot take down with it. A usage chunk still held
            # back (the last one read) never reached the client, and its text is not charged.
            relayed = payloads[:-1] if usage_chunk is not None else list(payloads)

            def after_disconnect() -> Outcome:
                if not relayed:  # before the first event: as before any byte, no charge
                    return client_left()
                tokens_used, source = usage_of(call, None, lambda: _produced_text(relayed))
                # The prompt was consumed even if no text came back: billable.
                return bounded_outcome(call, "client_disconnected", 499, tokens_used, source, True)

            settlement.settle_detached(after_disconnect)
        release()


# ------------------------------------------------------------------------------ the SSE wire


class _LastChunk(bytes):
    """The last piece of a relayed stream."""


class _StreamProblem(Exception):
    pass


class _MalformedStream(_StreamProblem):
    pass


class _UpstreamStreamError(_StreamProblem):
    pass


class _StreamIncomplete(_StreamProblem):
    """The upstream closed the stream without its end marker."""


class _SSELines:
    """Splits an event stream into `data:` payloads across network reads."""

    def __init__(self) -> None:
        self._rest = b""
        self.done = False

    def feed(self, block: bytes) -> list[bytes]:
        data = self._rest + block
        *complete, self._rest = data.split(b"\n")
        if len(self._rest) > MAX_SSE_LINE_BYTES:
            raise _MalformedStream()
        return [line[5:].strip() for line in complete if line.startswith(b"data:")]


def _parse_chunk(payload: bytes) -> dict[str, Any]:
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise _MalformedStream() from None
    if not isinstance(chunk, dict):
        raise _MalformedStream()
    if "error" in chunk:
        raise _UpstreamStreamError()
    return chunk


def _produced_text(payloads: list[bytes]) -> str:
    """The text the relayed chunks carried (parsed again only when an estimate is needed)."""
    return "".join(tokens.choices_text(orjson.loads(p)) for p in payloads)


def _intermediate(call: Call, chunk: dict[str, Any]) -> list[bytes]:
    """A chunk with usage that turned out not to be the last (running usage statistics)."""
    if call.wants_usage:
        return [b"data: " + orjson.dumps(chunk) + b"\n\n"]
    return _without_usage(chunk)


def _without_usage(chunk: dict[str, Any]) -> list[bytes]:
    """A chunk's choices without its usage (nothing when it carries no choices)."""
    chunk.pop("usage", None)
    return [b"data: " + orjson.dumps(chunk) + b"\n\n"] if chunk.get("choices") else []


class PublicModel:
    """Writes the public model name the client asked for into each chunk's `model`.

    The relayed payload is passed on as the upstream wrote it, so the upstream's name is
    replaced in its bytes: its field `"model":<name>` (or `"model": <name>`, with the name
    as orjson writes it) when it occurs exactly once. Inside a JSON string every quote is
    escaped, so that text cannot stand in a value; a payload where it is not found exactly
    once (another encoding of the name, or the same field nested) is encoded again. The
    chunk object is updated too, for the chunks that are encoded again anyway (usage)."""

    def __init__(self, public: str) -> None:
        self.public = public
        self._name = orjson.dumps(public)
        self._upstream: str | None = None
        self._fields = (b"", b"")

    def __call__(self, payload: bytes, chunk: dict[str, Any]) -> bytes:
        model = chunk.get("model")
        if model is None or model == self.public:
            return payload
        chunk["model"] = self.public
        if not isinstance(model, str):
            return orjson.dumps(chunk)
        if model != self._upstream:
            self._upstream = model
            value = orjson.dumps(model)
            self._fields = (b'"model":' + value, b'"model": ' + value)
        compact, spaced = self._fields
        found = payload.count(compact)
        if found == 1 and spaced not in payload:
            return payload.replace(compact, b'"model":' + self._name)
        if found == 0 and payload.count(spaced) == 1:
            return payload.replace(spaced, b'"model": ' + self._name)
        return orjson.dumps(chunk)


def _bare_chunk(call: Call, payloads: list[bytes]) -> dict[str, Any]:
    """A usage-only chunk of this stream: the id and created time of its last chunk."""
    last: Any = orjson.loads(payloads[-1]) if payloads else {}
    last = last if isinstance(last, dict) else {}
    return {"id": last.get("id", call.request_id), "object": last.get("object",
            "chat.completion.chunk"), "created": last.get("created", 0),
            "model": call.model.name, "choices": []}  # fmt: skip


def _usage_chunk(
    call: Call,
    chunk: dict[str, Any],
    upstream_usage: dict[str, Any],
    outcome: Outcome,
    price: int,
) -> bytes | None:
    if call.wants_usage:
        placeholder = cost_placeholder()
        chunk["usage"] = usage_for_client(upstream_usage, outcome, placeholder)
        return b"data: " + with_cost(orjson.dumps(chunk), placeholder, price) + b"\n\n"
    if chunk.get("choices"):
        del chunk["usage"]
        return b"data: " + orjson.dumps(chunk) + b"\n\n"
    return None  # the usage-only chunk the client did not ask for
