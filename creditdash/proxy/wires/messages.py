"""The client wire of Anthropic's Messages API: how /v1/messages clients are answered.

The request was translated to a chat body before the core ran (messages_translate.py); this
wire renders what the core produced (a chat completion, the relay's chat events, a gateway
error or an upstream 4xx) in Anthropic's shapes, usage and cost included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response

from creditdash.proxy import errors
from creditdash.proxy.call import Call, Outcome
from creditdash.proxy.usage import cost_placeholder, usage_for_client, with_cost
from creditdash.proxy.wires.base import ClientWire
from creditdash.proxy.wires.messages_translate import (
    StreamTranslator,
    answer_usage,
    chat_to_message,
    error_body,
    message_id,
    upstream_error_body,
)


class MessagesWire(ClientWire):
    """Answers Messages API clients (POST /v1/messages)."""

    name = "messages"
    # The stream's message_delta carries the final usage and cost, so the core always asks for
    # the usage chunk.
    wants_usage = True

    def error_response(self, error: errors.GatewayError, request_id: str | None) -> Response:
        return Response(
            error_body(error.status, error.message),
            status_code=error.status,
            media_type="application/json",
            headers=errors.error_headers(error, request_id),
        )

    def upstream_error(self, status: int, body: bytes, request_id: str) -> Response:
        return Response(
            upstream_error_body(status, body),
            status_code=status,
            media_type="application/json",
            headers={"x-request-id": request_id},
        )

    def render_complete(
        self, call: Call, data: dict[str, Any], outcome: Outcome, price: int
    ) -> bytes:
        placeholder = cost_placeholder()
        shown = usage_for_client(data.get("usage"), outcome, placeholder)
        message = chat_to_message(
            data,
            message_id=message_id(call.request_id),
            model=call.model.name,
            usage=answer_usage(shown, placeholder),
        )
        return with_cost(orjson.dumps(message), placeholder, price)

    def render_stream(self, call: Call, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        translator = StreamTranslator(message_id(call.request_id), call.model.name)
        return _messages_events(translator, events)


async def _messages_events(
    translator: StreamTranslator, events: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """The relay's events as Messages events. Closing this generator closes the relay, whose
    finally block settles a client that left."""
    try:
        async for block in events:
            out = b""
            # The relay writes whole events only: `data: ...` lines, each ended by a blank one.
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    out += translator.feed(line[5:].strip())
            if out:
                yield out
        tail = translator.close()
        if tail:
            yield tail
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


MESSAGES = MessagesWire()
