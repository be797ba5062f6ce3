"""The Anthropic Messages API's routes: POST /v1/messages and POST /v1/messages/count_tokens.

A Messages request is translated to a chat body at this edge and metered by the core as any
chat request (Gateway.serve), with the client's own body passed as native for routes that speak
Messages themselves. Everything these routes answer, refusals included (a bad key, a missing
max_tokens, too little credit), is in Anthropic's shape through the messages wire.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from creditdash.proxy import errors
from creditdash.proxy.call import Call, NativeRequest
from creditdash.proxy.gateway import Gateway
from creditdash.proxy.request import model_name, parse_object, read_limited
from creditdash.proxy.snapshot import ModelEntry
from creditdash.proxy.wires.messages import MESSAGES
from creditdash.proxy.wires.messages_translate import count_input_tokens, messages_to_chat

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


def _as_is(_call: Call, response: Any) -> Any:
    """The native answer's view: the Anthropic upstream wire already gives the core chat."""
    return response


def anthropic_errors(handler: Handler) -> Handler:
    """Every refusal and failure of a handler answered in Anthropic's error shape."""

    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except errors.GatewayError as exc:
            return MESSAGES.error_response(exc, None)
        except Exception as exc:  # the app's handler would answer in OpenAI's shape
            log.error("messages request failed", exc_info=exc)
            failure = errors.GatewayError(500, "Internal gateway error.", "api_error", None)
            return MESSAGES.error_response(failure, None)

    return answer


def messages_routes(gateway: Gateway) -> list[Route]:
    async def read(request: Request) -> dict[str, Any]:
        return parse_object(await read_limited(request, gateway.settings.max_body_bytes))

    async def messages(request: Request) -> Response:
        started = time.perf_counter()
        key = await gateway.authenticate(request, api_key_header=True)
        body_bytes = await read_limited(request, gateway.settings.max_body_bytes)
        body = parse_object(body_bytes)
        model_name(body)  # a missing model is the first thing refused, as on the chat path
        chat = messages_to_chat(body)
        native = NativeRequest(endpoint="messages", body=body, view=_as_is, cap_field="max_tokens")
        return await gateway.serve(
            key, "chat", chat, body_bytes, started, wire=MESSAGES, native=native, request=request
        )

    async def count_tokens(request: Request) -> Response:
        """The input a request would count, as the gateway itself estimates it (tokens.py):
        authenticated and checked against the key's models, but nothing is held or charged
        and no upstream is called, so it is free and answers at once."""
        key = await gateway.authenticate(request, api_key_header=True)
        body = await read(request)
        name = model_name(body)
        snapshot = await gateway.catalog.get()
        model = snapshot.models.get(name)
        if model is None or not model.routes or not key.may_use(name):
            raise errors.model_not_found(name)
        chat = messages_to_chat(body, require_max_tokens=False)
        payload = {"input_tokens": count_input_tokens(chat)}
        return Response(orjson.dumps(payload), media_type="application/json")

    return [
        Route("/v1/messages", anthropic_errors(messages), methods=["POST"]),
        Route("/v1/messages/count_tokens", anthropic_errors(count_tokens), methods=["POST"]),
    ]


def wants_anthropic_shape(request: Request) -> bool:
    """A request from an Anthropic client (its SDKs always send anthropic-version)."""
    return "anthropic-version" in request.headers


def anthropic_model_list(models: list[ModelEntry]) -> dict[str, Any]:
    """Models in Anthropic's list shape (one page with all of them)."""
    data = [
        {
            "type": "model",
            "id": m.name,
            "display_name": m.name,
            "created_at": datetime.fromtimestamp(m.created, UTC).isoformat().replace("+00:00", "Z"),
        }
        for m in models
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
