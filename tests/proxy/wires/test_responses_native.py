"""Responses requests passed through to a route that serves /v1/responses itself (a provider
with responses: true): the client's body reaches it, the answer comes back in its own
shape with this gateway's id, model and cost, and the charge is exact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.catalog.prices import TokenUsage, cost_micros
from creditdash.core import db
from tests.conftest import free_port
from tests.proxy.conftest import COST, GatewayRig
from tests.proxy.conftest import PRICE as PRICE_YAML
from tests.proxy.fake_upstream import ServerThread
from tests.proxy.test_gateway import PRICE, assert_ledger_ok, balance, micros, records

NATIVE_USAGE = {
    "input_tokens": 20,
    "input_tokens_details": {"cached_tokens": 5},
    "output_tokens": 9,
    "output_tokens_details": {"reasoning_tokens": 3},
    "total_tokens": 29,
}
CHARGE = cost_micros(
    PRICE, TokenUsage(prompt_tokens=20, completion_tokens=9, cached_tokens=5, reasoning_tokens=3)
)


def _response(status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": "Native hello.", "annotations": []}
    message = {"id": "msg_up", "type": "message", "status": "completed", "role": "assistant",
               "content": [part]}  # fmt: skip
    return {"id": "resp_upstream", "object": "response", "created_at": 1, "status": status,
            "model": "native-up", "output": [message], "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [], "usage": NATIVE_USAGE}  # fmt: skip


class NativeUpstream:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def app(self) -> Starlette:
        async def responses(request: Request) -> Response:
            body = json.loads(await request.body())
            self.seen.append(body)
            if not body.get("stream"):
                return JSONResponse(_response())
            shell = {**_response(), "status": "in_progress", "output": [], "usage": None}
            events = [
                {"type": "response.created", "response": shell},
                {"type": "response.output_text.delta", "item_id": "msg_up", "output_index": 0,
                 "content_index": 0, "delta": "Native"},
                {"type": "response.output_text.delta", "item_id": "msg_up", "output_index": 0,
                 "content_index": 0, "delta": " hello."},
                {"type": "response.completed", "response": _response()},
            ]  # fmt: skip
            text = "".join(
                f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': i + 7})}\n\n"
                for i, e in enumerate(events)
            )
            return Response(text, media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/responses", responses, methods=["POST"])])


@pytest.fixture(scope="module")
def native_upstream() -> Iterator[tuple[NativeUpstream, int]]:
    fake = NativeUpstream()
    server = ServerThread(fake.app(), free_port())
    server.start()
    yield fake, server.port
    server.stop()


@pytest.fixture
def native(rig: GatewayRig, native_upstream: tuple[NativeUpstream, int]) -> NativeUpstream:
    fake, port = native_upstream
    catalog = (
        "providers:\n"
        "  - name: native\n"
        f"    base_url: http://127.0.0.1:{port}/v1\n"
        "    api_key: sk-native-0123456789\n"
        "    responses: true\n"
        "models:\n"
        "  - name: native\n"
        f"    price: {PRICE_YAML}\n"
        "    max_output_tokens: 100\n"
        "    routes:\n"
        f"      - {{provider: native, upstream_model: native-up, cost: {COST}}}\n"
    )
    with db.session_scope(engine=rig.engine) as session:
        import_catalog(session, parse_catalog(catalog))
    rig.app.state.gateway.catalog.invalidate()
    fake.seen.clear()
    return fake


def test_a_native_route_gets_the_clients_body_and_its_answer_is_charged(
    rig: GatewayRig, native: NativeUpstream
) -> None:
    before = balance(rig).posted_micros
    tools = [{"type": "web_search"}]
    first = rig.client().responses.create(
        model="native",
        input="Hi",
        tools=tools,
        max_output_tokens=5000,  # type: ignore[list-item]
    )
    sent = native.seen[-1]
    assert sent["model"] == "native-up" and sent["tools"] == tools
    assert sent["max_output_tokens"] == 100  # clamped to the model's cap, as held
    assert sent["store"] is False
    assert first.id.startswith("resp_") and first.id != "resp_upstream"
    assert (first.model, first.output_text) == ("native", "Native hello.")
    assert first.usage is not None and first.usage.input_tokens_details.cached_tokens == 5
    assert micros(first.usage.model_extra["cost"]) == CHARGE  # type: ignore[index]
    # Continued with previous_response_id: the upstream gets the whole conversation.
    rig.client().responses.create(model="native", input="More", previous_response_id=first.id)
    sent = native.seen[-1]
    assert "previous_response_id" not in sent
    assert [item.get("role") for item in sent["input"]] == ["user", "assistant", "user"]
    made = records(rig)
    assert [(r.endpoint, r.upstream_endpoint) for r in made] == [("responses", "responses")] * 2
    assert before - balance(rig).posted_micros == sum(r.price_micros for r in made) == 2 * CHARGE
    assert_ledger_ok(rig)


def test_a_native_stream_is_passed_through_renumbered_with_the_cost(
    rig: GatewayRig, native: NativeUpstream
) -> None:
    before = balance(rig).posted_micros
    events = list(rig.client().responses.create(model="native", input="Hi", stream=True))
    assert [e.type for e in events] == [
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == [0, 1, 2, 3]
    final = events[-1].response  # type: ignore[union-attr]
    assert (final.model, final.output_text) == ("native", "Native hello.")
    assert final.id == events[0].response.id  # type: ignore[union-attr]
    assert micros(final.usage.model_extra["cost"]) == CHARGE  # type: ignore[union-attr,index]
    assert before - balance(rig).posted_micros == CHARGE == records(rig)[0].price_micros
    assert rig.client().responses.retrieve(final.id).output_text == "Native hello."
    assert_ledger_ok(rig)
