"""The Responses API's routes: POST /v1/responses (metered, over the chat core) and the stored
responses, GET and DELETE /v1/responses/{id}.

Everything a request can be refused for without running is decided here before the gateway
holds anything: the key, the body, tools no chat route can run, and a previous_response_id
that is unknown or another customer's. The answer is stored after it was settled, unless the
request said store: false.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from creditdash.core.ids import new_id
from creditdash.proxy import errors, stored_responses
from creditdash.proxy.auth import KeyInfo
from creditdash.proxy.call import NativeRequest
from creditdash.proxy.gateway import Gateway
from creditdash.proxy.request import model_name, parse_object, read_limited
from creditdash.proxy.wires import responses_native
from creditdash.proxy.wires.base import OPENAI
from creditdash.proxy.wires.responses import ResponsesWire
from creditdash.proxy.wires.responses_translate import (
    builtin_tools,
    chat_body,
    input_items,
    response_shell,
)

log = logging.getLogger(__name__)


def not_found(what: str) -> errors.GatewayError:
    return errors.GatewayError(404, what, "invalid_request_error", "not_found")


def _json(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


async def _history(key: KeyInfo, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation previous_response_id continues (empty without one)."""
    previous = body.get("previous_response_id")
    if previous is None:
        return []
    if not isinstance(previous, str):
        raise errors.bad_request("'previous_response_id' must be a string.")
    found = await asyncio.to_thread(
        stored_responses.load, customer_id=key.customer_id, response_id=previous
    )
    if found is None:
        raise errors.GatewayError(
            404,
            f"Previous response with id '{previous[:60]}' not found.",
            "invalid_request_error",
            "previous_response_not_found",
        )
    return found.conversation


def _refuse_builtin_tools(body: dict[str, Any], native: bool) -> None:
    """Built-in tools need a route that serves the Responses API itself (native)."""
    kinds = builtin_tools(body)
    if kinds and not native:
        shown = ", ".join(sorted(set(kinds)))
        raise errors.bad_request(
            f"Built-in tools ({shown}) are not available on this model: its routes serve "
            "chat completions only, which run function tools alone.",
            "unsupported_tool",
        )


def _native_request(body: dict[str, Any], conversation: list[dict[str, Any]]) -> NativeRequest:
    """The client's request for a route that serves /v1/responses: the whole conversation
    as its input (the upstream knows none of our response ids), stored by us, not there."""
    native = {k: v for k, v in body.items() if k != "previous_response_id"}
    native.update(input=conversation, store=False)
    return NativeRequest(
        endpoint="responses", body=native, view=responses_native.view,
        cap_field="max_output_tokens",
    )  # fmt: skip


def responses_routes(gateway: Gateway) -> list[Route]:
    async def create(request: Request) -> Response:
        started = time.perf_counter()
        try:
            key = await gateway.authenticate(request)
            body_bytes = await read_limited(request, gateway.settings.max_body_bytes)
            return await _create(key, parse_object(body_bytes), body_bytes, started, request)
        except errors.GatewayError as error:
            return OPENAI.error_response(error, None)

    async def _create(
        key: KeyInfo, body: dict[str, Any], body_bytes: bytes, started: float, request: Request
    ) -> Response:
        model = model_name(body)
        entry = (await gateway.catalog.get()).models.get(model)
        if entry is None or not entry.routes or not key.may_use(model):
            raise errors.model_not_found(model)
        native = any(r.serves_responses for r in entry.routes)
        _refuse_builtin_tools(body, native)
        store = body.get("store", True)
        if not isinstance(store, bool):
            raise errors.bad_request("'store' must be true or false.")
        history = await _history(key, body)
        items = input_items(body)
        conversation = history + items
        chat = chat_body(body, conversation)
        shell = response_shell(new_id("resp"), model, body)

        async def save(request_id: str, response: bytes, output: list[dict[str, Any]]) -> None:
            await asyncio.to_thread(
                stored_responses.save,
                response_id=shell["id"],
                customer_id=key.customer_id,
                request_id=request_id,
                response=response,
                conversation=conversation + output,
            )

        wire = ResponsesWire(shell, save if store else None)
        # The history is part of the prompt: the hold covers its bytes too.
        held_bytes = body_bytes + orjson.dumps(history) if history else body_bytes
        passed = _native_request(body, conversation) if native else None
        try:
            answer = await gateway.serve(
                key, "chat", chat, held_bytes, started, wire=wire, native=passed, request=request
            )
        except errors.GatewayError as error:
            return wire.error_response(error, None)
        if store and wire.finished is not None:
            request_id, response, output = wire.finished
            try:
                await save(request_id, response, output)
            except Exception:  # metered and delivered even if it could not be stored
                log.exception("could not store response %s", shell["id"])
        return answer

    async def stored(request: Request) -> Response:
        try:
            key = await gateway.authenticate(request)
            response_id = request.path_params["response_id"]
            if request.method == "DELETE":
                removed = await asyncio.to_thread(
                    stored_responses.remove, customer_id=key.customer_id, response_id=response_id
                )
                if not removed:
                    raise not_found(f"No response with id '{response_id[:60]}'.")
                return _json({"id": response_id, "object": "response.deleted", "deleted": True})
            found = await asyncio.to_thread(
                stored_responses.load, customer_id=key.customer_id, response_id=response_id
            )
            if found is None:
                raise not_found(f"No response with id '{response_id[:60]}'.")
            return Response(found.response, media_type="application/json")
        except errors.GatewayError as error:
            return OPENAI.error_response(error, None)

    return [
        Route("/v1/responses", create, methods=["POST"]),
        Route("/v1/responses/{response_id}", stored, methods=["GET", "DELETE"]),
    ]
