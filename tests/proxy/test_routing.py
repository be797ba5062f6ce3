"""Routing across several fake upstreams on loopback: priorities, weights, fallback, cooldown."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from creditdash.accounts.customers import set_allowed_models
from creditdash.billing.models import UsageRecord
from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.core import db
from creditdash.core.audit import CLI
from tests.conftest import free_port
from tests.proxy.conftest import COST, PRICE, UPSTREAM_KEY, GatewayRig
from tests.proxy.fake_upstream import FakeUpstream, ServerThread

MESSAGES = [{"role": "user", "content": "route me"}]


@pytest.fixture(scope="session")
def second_upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(port=free_port())
    server = ServerThread(fake.app(), fake.port)
    server.start()
    yield fake
    server.stop()


def install(rig: GatewayRig, second: FakeUpstream, models: str) -> None:
    closed = free_port()  # nothing listens here: connection refused
    providers = [("a", rig.upstream.port), ("b", second.port), ("closed", closed)]
    lines = ["providers:"]
    for name, port in providers:
        lines.append(
            f'  - {{name: {name}, base_url: "http://127.0.0.1:{port}/v1", '
            f"api_key: {UPSTREAM_KEY}, timeout_s: 1}}"
        )
    catalog = "\n".join([*lines, "models:", models, ""])
    with db.session_scope(engine=rig.engine) as session:
        import_catalog(session, parse_catalog(catalog))
    gateway = rig.app.state.gateway
    gateway.catalog.invalidate()
    gateway.routes.reset()


def model(name: str, routes: list[tuple[str, str, int, int]], fallback: str = "") -> str:
    lines = [f"  - name: {name}", f"    price: {PRICE}"]
    if fallback:
        lines.append(f"    fallback: {fallback}")
    lines.append("    routes:")
    for provider, upstream, priority, weight in routes:
        lines.append(
            f"      - {{provider: {provider}, upstream_model: {upstream}, priority: {priority}, "
            f"weight: {weight}, cost: {COST}}}"
        )
    return "\n".join(lines)


def call(rig: GatewayRig, name: str, **extra: object) -> tuple[int, dict[str, object]]:
    response = rig.http().post(
        "/v1/chat/completions", json={"model": name, "messages": MESSAGES, **extra}
    )
    request_id = response.headers["x-request-id"]
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        stored = session.get(UsageRecord, request_id)
        assert stored is not None
        return response.status_code, {
            "provider": stored.provider,
            "attempts": stored.attempts,
            "log": json.loads(stored.attempts_json),
            "price": stored.price_micros,
        }


def hits(*upstreams: FakeUpstream) -> list[int]:
    return [u.count() for u in upstreams]


def test_lower_priority_runs_first(rig: GatewayRig, second_upstream: FakeUpstream) -> None:
    install(rig, second_upstream, model("prio", [("a", "echo", 2, 1), ("b", "echo", 1, 1)]))
    before = hits(rig.upstream, second_upstream)
    for _ in range(5):
        status, info = call(rig, "prio")
        assert (status, info["provider"], info["attempts"]) == (200, "b", 1)
    after = hits(rig.upstream, second_upstream)
    assert (after[0] - before[0], after[1] - before[1]) == (0, 5)


def test_equal_priority_shares_by_weight(rig: GatewayRig, second_upstream: FakeUpstream) -> None:
    install(rig, second_upstream, model("weighted", [("a", "echo", 1, 3), ("b", "echo", 1, 1)]))
    counts = {"a": 0, "b": 0}
    for _ in range(200):
        status, info = call(rig, "weighted")
        assert status == 200
        counts[str(info["provider"])] += 1
    # Expected 150 / 50; a binomial(200, 0.75) stays within +-25 of 150 far beyond 4 sigma.
    assert 125 <= counts["a"] <= 175, counts


@pytest.mark.parametrize("failing", ["fail-500", "fail-429", "hang", "fail-401"])
def test_falls_back_before_the_first_byte(
    rig: GatewayRig, second_upstream: FakeUpstream, failing: str
) -> None:
    install(rig, second_upstream, model("fb", [("a", failing, 1, 1), ("b", "echo", 2, 1)]))
    status, info = call(rig, "fb")
    assert (status, info["provider"], info["attempts"]) == (200, "b", 2)
    first = info["log"][0]  # type: ignore[index]
    assert first["provider"] == "a" and first["outcome"] in ("http_error", "timeout")
    assert info["price"] > 0  # type: ignore[operator]


def test_falls_back_on_connection_refused(rig: GatewayRig, second_upstream: FakeUpstream) -> None:
    install(rig, second_upstream, model("refused", [("closed", "echo", 1, 1), ("b", "echo", 2, 1)]))
    status, info = call(rig, "refused")
    assert (status, info["provider"], info["attempts"]) == (200, "b", 2)
    assert info["log"][0]["outcome"] == "connect_error"  # type: ignore[index]


def test_a_request_error_is_not_retried(rig: GatewayRig, second_upstream: FakeUpstream) -> None:
    install(rig, second_upstream, model("bad", [("a", "fail-400-echo", 1, 1), ("b", "echo", 2, 1)]))
    before = second_upstream.count()
    status, info = call(rig, "bad")
    assert (status, info["attempts"], info["price"]) == (400, 1, 0)
    assert second_upstream.count() == before


def test_policy_decides_which_failures_fall_through(
    rig: GatewayRig, second_upstream: FakeUpstream
) -> None:
    policy = "{fall_through: [timeout], max_attempts: 2}"
    install(
        rig,
        second_upstream,
        model("strict", [("a", "fail-500", 1, 1), ("b", "echo", 2, 1)], fallback=policy),
    )
    status, info = call(rig, "strict")
    assert (status, info["attempts"]) == (502, 1)


def test_no_fallback_after_the_first_streamed_byte(
    rig: GatewayRig, second_upstream: FakeUpstream
) -> None:
    install(
        rig,
        second_upstream,
        model("midway", [("a", "malformed-stream", 1, 1), ("b", "echo", 2, 1)]),
    )
    before = second_upstream.count()
    with rig.http().stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "midway", "messages": MESSAGES, "stream": True},
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert json.loads(lines[-1][6:])["error"]["code"] == "upstream_failed"
    assert second_upstream.count() == before


def test_cooldown_rests_a_failing_route_and_lets_it_back(
    rig: GatewayRig, second_upstream: FakeUpstream
) -> None:
    policy = "{cooldown: {failures: 2, seconds: 1}}"
    install(
        rig,
        second_upstream,
        model("cool", [("a", "fail-500", 1, 1), ("b", "echo", 2, 1)], fallback=policy),
    )
    seen_a = rig.upstream.count("fail-500")
    for _ in range(2):  # two failures on a, each served by b
        assert call(rig, "cool")[1]["attempts"] == 2
    assert rig.upstream.count("fail-500") == seen_a + 2
    status, info = call(rig, "cool")  # a rests: b serves at once
    assert (status, info["provider"], info["attempts"]) == (200, "b", 1)
    assert rig.upstream.count("fail-500") == seen_a + 2
    time.sleep(1.1)  # the rest is over: a is tried again
    assert call(rig, "cool")[1]["attempts"] == 2
    assert rig.upstream.count("fail-500") == seen_a + 3


def test_workspace_allow_list_applies_with_the_keys(
    rig: GatewayRig, second_upstream: FakeUpstream
) -> None:
    install(rig, second_upstream, model("one", [("b", "echo", 1, 1)]) + "\n"
            + model("two", [("b", "echo", 1, 1)]))  # fmt: skip
    with db.session_scope(engine=rig.engine) as session:
        set_allowed_models(session, customer_id=rig.customer_id, models=["one"], actor=CLI)
    rig.app.state.gateway.keys.clear()
    listed = {m.id for m in rig.client().models.list().data}
    assert "one" in listed and "two" not in listed
    refused = rig.http().post("/v1/chat/completions", json={"model": "two", "messages": MESSAGES})
    assert refused.status_code == 404


def test_upstream_key_never_reaches_records_logs_or_answers(
    rig: GatewayRig, second_upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    install(rig, second_upstream, model("leak", [("a", "fail-400-echo", 1, 1)]) + "\n"
            + model("fine", [("a", "fail-500", 1, 1), ("b", "echo", 2, 1)]))  # fmt: skip
    answers = [
        rig.http().post("/v1/chat/completions", json={"model": m, "messages": MESSAGES}).text
        for m in ("leak", "fine")
    ]
    with rig.http() as http:
        answers += [http.get("/v1/models").text, http.get("/v1/credits").text]
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        stored = [
            json.dumps(r.model_dump(), default=str)
            for r in session.execute(select(UsageRecord)).scalars()
        ]
    logged = [record.getMessage() for record in caplog.records]
    for text in answers + stored + logged:
        assert UPSTREAM_KEY not in text
