"""The two seams a wire protocol plugs into: how a client is answered, and how an upstream is
called (docs/design.md, "Protocols").

The metered core (gateway.py, forwarding.py, settlement.py, streaming.py) speaks one protocol,
OpenAI's chat completions (with completions and embeddings beside it), and meters every ending
in it. Another protocol is an adapter at one of its two edges:

- a ClientWire answers clients of one API. It turns their request into a chat body before the
  core runs, and renders what the core produced (a chat completion with usage and cost, or the
  chat event stream the relay writes) back in the client's shape, errors included. OPENAI, the
  default, is the identity and costs the chat path nothing.
- an UpstreamWire calls upstreams of one kind. It turns the core's chat body into the upstream's
  request, and gives the core a chat view of the answer (status, body, event stream), so the
  core's metering rules apply unchanged.

When the route speaks the client's own API, the request passes through: the ClientWire's
NativeRequest carries the client's body, the UpstreamWire sends it as it is (with the route's
model name), and NativeRequest.view turns the native answer into the chat view the core meters,
keeping the native payloads for the ClientWire to render. So a protocol never round-trips
through chat where it need not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response

from creditdash.proxy import errors
from creditdash.proxy.call import Call, NativeRequest, Outcome
from creditdash.proxy.snapshot import RouteTarget
from creditdash.proxy.upstream import ResponseLike
from creditdash.proxy.usage import cost_placeholder, usage_for_client, with_cost

# The endpoints of the hub protocol the core meters (the keys of OpenAIUpstream.PATHS).
HUB_ENDPOINTS = ("chat", "completions", "embeddings")


class ClientWire:
    """How the gateway answers the clients of one API. This base class is OpenAI's own wire,
    untranslated: the core's answer goes out exactly as it is produced."""

    # The API the client called, as usage records and the request log name it; for OPENAI the
    # core's endpoint (chat, completions, embeddings) is the name.
    name = ""
    # True: the core always asks for the usage chunk on streams, since render_stream needs it
    # (the core hides it from OpenAI clients that did not ask for it).
    wants_usage = False

    def error_response(self, error: errors.GatewayError, request_id: str | None) -> Response:
        """A refusal or failure the gateway decided (auth, credit, limits, upstream down)."""
        return errors.error_response(error, request_id)

    def upstream_error(self, status: int, body: bytes, request_id: str) -> Response:
        """An upstream 4xx the request caused: status and body (redacted, and in the chat
        wire's error shape unless the request passed through natively)."""
        return Response(
            body,
            status_code=status,
            media_type="application/json",
            headers={"x-request-id": request_id},
        )

    def render_complete(
        self, call: Call, data: dict[str, Any], outcome: Outcome, price: int
    ) -> bytes:
        """The answer to a non-streamed request, after it was settled at price micros: data is
        the chat completion (or the native answer's chat view) the upstream gave."""
        placeholder = cost_placeholder()
        data["model"] = call.model.name  # the public name asked for, not the upstream's
        data["usage"] = usage_for_client(data.get("usage"), outcome, placeholder)
        return with_cost(orjson.dumps(data), placeholder, price)

    def render_stream(self, call: Call, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The streamed answer. events is the relay's chat event stream: `data: {chunk}` events,
        the usage chunk with usage.cost last (when wants_usage), then `data: [DONE]`, or a last
        `data: {"error": ...}` event when the stream failed. A wrapping generator must close
        events when it is closed itself (the relay settles a client that left in its finally)."""
        return events


OPENAI = ClientWire()


class UpstreamWire:
    """How the gateway calls upstreams of one kind. This base class is the OpenAI wire."""

    name = "openai"
    PATHS = {
        "chat": "/chat/completions",
        "completions": "/completions",
        "embeddings": "/embeddings",
        "responses": "/responses",
    }

    def endpoint(self, call: Call, route: RouteTarget) -> str | None:
        """The upstream API this call uses on this route, or None when the route cannot serve
        it (the attempt is then refused and the next route tried)."""
        native = self.native(call, route)
        return native.endpoint if native is not None else call.endpoint

    def native(self, call: Call, route: RouteTarget) -> NativeRequest | None:
        """The client's own request, when this route speaks the client's API."""
        native = call.native
        if native is not None and native.endpoint in self.native_endpoints(route):
            return native
        return None

    def native_endpoints(self, route: RouteTarget) -> frozenset[str]:
        return frozenset({"responses"}) if route.serves_responses else frozenset()

    def path(self, endpoint: str) -> str:
        return self.PATHS[endpoint]

    def headers(self, route: RouteTarget) -> dict[str, str]:
        headers = {**route.extra_headers, "content-type": "application/json"}
        if route.api_key:
            headers["authorization"] = f"Bearer {route.api_key}"
        return headers

    def body(self, call: Call, route: RouteTarget) -> bytes:
        """The request body for this route: the client's native body when it passes through,
        else the core's chat body; with the route's model name, and on a stream always a
        request for the usage chunk (metering needs it; streaming.py hides it if not asked)."""
        native = self.native(call, route)
        if native is not None:
            return orjson.dumps(native_body(call, native, route))
        body = dict(call.body)
        body["model"] = route.upstream_model
        if call.endpoint == "chat" and route.output_cap_param != "auto":
            rename_cap(body, route.output_cap_param)
        if call.stream:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}  # fmt: skip
        return orjson.dumps(body)

    def view(self, call: Call, route: RouteTarget, response: ResponseLike) -> ResponseLike:
        """The answer as the core meters it: a chat completion or chat event stream."""
        native = self.native(call, route)
        if native is not None:
            viewed: ResponseLike = native.view(call, response)
            return viewed
        return response


OPENAI_UPSTREAM = UpstreamWire()


def rename_cap(body: dict[str, Any], field: str) -> None:
    """Send the chat body's one output cap (request.max_output wrote it) under field, the name
    the route's upstream takes: max_completion_tokens for reasoning models, which refuse
    max_tokens, or max_tokens for older servers that know no other."""
    other = "max_tokens" if field == "max_completion_tokens" else "max_completion_tokens"
    if other in body:
        body[field] = body.pop(other)


def native_body(call: Call, native: NativeRequest, route: RouteTarget) -> dict[str, Any]:
    """The client's own body as a route of its API is sent it: the route's model name, and in
    the API's cap field the output cap the hold covers (the chat body's, clamped)."""
    body = {**native.body, "model": route.upstream_model}
    cap = call.body.get("max_completion_tokens", call.body.get("max_tokens"))
    if isinstance(cap, int) and call.endpoint != "embeddings":
        body[native.cap_field] = cap
    return body
