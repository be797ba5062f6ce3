"""The metered gateway, driven by the official openai SDK and raw HTTP, over real loopback TCP."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
from decimal import Decimal
from typing import Any

import httpx
import openai
import orjson
import pytest
from PIL import Image
from sqlalchemy import select

from creditdash.accounts.api_keys import revoke_api_key
from creditdash.accounts.models import ApiKey
from creditdash.billing import ledger
from creditdash.billing.models import UsageRecord
from creditdash.catalog.prices import Price, TokenUsage, cost_micros, worst_case_micros
from creditdash.core import db
from creditdash.proxy.tokens import hold_prompt_tokens
from tests.proxy.conftest import MAX_BODY_BYTES, UPSTREAM_HEADER_KEY, UPSTREAM_KEY, GatewayRig

PRICE = Price(1_000_000, 2_000_000, 500_000)
UPSTREAM_COST = Price(250_000, 500_000, 125_000)
FAKE_USAGE = TokenUsage(prompt_tokens=11, completion_tokens=7)
MESSAGES = [{"role": "user", "content": "Say hello"}]


def balance(rig: GatewayRig, account_id: int | None = None) -> ledger.Balance:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        return ledger.get_balance(session, account_id or rig.account_id)


def record(rig: GatewayRig, request_id: str) -> UsageRecord:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        found = session.get(UsageRecord, request_id)
        assert found is not None
        return found


def records(rig: GatewayRig) -> list[UsageRecord]:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        return list(session.execute(select(UsageRecord)).scalars())


def assert_ledger_ok(rig: GatewayRig) -> None:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        assert ledger.verify(session) == []
        assert ledger.open_hold_count(session) == 0


def micros(cost: Any) -> int:
    return int(Decimal(str(cost)) * 1_000_000)


# ---------------------------------------------------------------------------- happy paths


def test_chat_non_stream_charges_exactly_the_upstream_usage(rig: GatewayRig) -> None:
    before = balance(rig)
    raw = rig.client().chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES, max_tokens=50
    )
    completion = raw.parse()
    request_id = raw.headers["x-request-id"]
    expected = cost_micros(PRICE, FAKE_USAGE)
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 7)
    # The JSON number is exact: the raw body says 0.000025, not a binary approximation.
    assert b'"cost":0.000025' in raw.http_response.content
    assert micros(completion.usage.model_extra["cost"]) == expected  # type: ignore[index]
    after = balance(rig)
    assert before.posted_micros - after.posted_micros == expected
    assert after.held_micros == 0
    stored = record(rig, request_id)
    assert (stored.prompt_tokens, stored.completion_tokens, stored.usage_source) == (
        11,
        7,
        "provider",
    )
    assert (stored.price_micros, stored.upstream_cost_micros) == (
        expected,
        cost_micros(UPSTREAM_COST, FAKE_USAGE),
    )
    assert (stored.provider, stored.upstream_model, stored.status, stored.attempts) == (
        "fake",
        "echo",
        "ok",
        1,
    )
    assert stored.balance_after_micros == after.posted_micros
    assert_ledger_ok(rig)


def test_request_reaches_upstream_unchanged_but_for_model_and_limits(rig: GatewayRig) -> None:
    before = rig.upstream.count()
    rig.client().chat.completions.create(
        model="chat",
        messages=MESSAGES,
        max_tokens=5000,  # above the model's 100: clamped
        temperature=0.3,
        extra_body={"vendor_specific": {"keep": True}},
    )
    seen = rig.upstream.seen[before]
    assert seen.body["model"] == "echo"
    assert seen.body["max_tokens"] == 100
    assert seen.body["temperature"] == 0.3
    assert seen.body["vendor_specific"] == {"keep": True}
    assert seen.body["messages"] == MESSAGES
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    # The extra headers are stored encrypted and sent decrypted.
    assert seen.headers["api-key"] == UPSTREAM_HEADER_KEY
    assert seen.headers["x-org"] == "creditdash-tests"
    assert rig.key not in json.dumps(seen.headers)


def test_stream_with_usage_ends_with_the_cost(rig: GatewayRig) -> None:
    before = balance(rig)
    seen_before = rig.upstream.count()
    stream = rig.client().chat.completions.create(
        model="chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake upstream."
    final = chunks[-1]
    assert final.usage is not None and final.choices == []
    expected = cost_micros(PRICE, FAKE_USAGE)
    assert micros(final.usage.model_extra["cost"]) == expected  # type: ignore[index]
    assert before.posted_micros - balance(rig).posted_micros == expected
    assert rig.upstream.seen[seen_before].body["stream_options"] == {"include_usage": True}
    assert_ledger_ok(rig)


def test_stream_without_usage_is_still_metered_from_the_provider(rig: GatewayRig) -> None:
    before = balance(rig)
    seen_before = rig.upstream.count()
    with rig.http().stream(
        "POST", "/v1/chat/completions", json={"model": "chat", "messages": MESSAGES, "stream": True}
    ) as response:
        request_id = response.headers["x-request-id"]
        # Events are not to be held back by a buffering proxy in front of the gateway.
        assert response.headers["x-accel-buffering"] == "no"
        lines = [line for line in response.iter_lines() if line]
    # The gateway asked the upstream for usage, but the client did not: no usage chunk for it.
    assert rig.upstream.seen[seen_before].body["stream_options"] == {"include_usage": True}
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line[6:]) for line in lines[:-1]]
    # No usage chunk reaches it; the upstream's "usage": null markers are passed on untouched.
    assert all(p.get("usage") is None for p in payloads)
    assert all(p["choices"] for p in payloads)
    stored = record(rig, request_id)
    assert stored.usage_source == "provider" and stored.stream
    assert before.posted_micros - balance(rig).posted_micros == cost_micros(PRICE, FAKE_USAGE)
    assert_ledger_ok(rig)


@pytest.mark.anyio
async def test_async_client_chat_stream_completions_and_embeddings(rig: GatewayRig) -> None:
    client = rig.async_client()
    completion = await client.chat.completions.create(model="chat", messages=MESSAGES)
    assert completion.choices[0].message.content
    stream = await client.chat.completions.create(
        model="chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    costs = [c.usage.model_extra["cost"] async for c in stream if c.usage]  # type: ignore[index]
    assert len(costs) == 1
    legacy = await client.completions.create(model="chat", prompt="Say hello", max_tokens=10)
    assert legacy.choices[0].text
    assert legacy.usage is not None and "cost" in (legacy.usage.model_extra or {})
    vectors = await client.embeddings.create(model="embed", input="hello")
    assert vectors.data[0].embedding == [0.1, 0.2]
    assert vectors.usage.prompt_tokens == 8
    embed_cost = cost_micros(PRICE, TokenUsage(prompt_tokens=8))
    assert micros(vectors.usage.model_extra["cost"]) == embed_cost  # type: ignore[index]
    await client.close()
    assert len(records(rig)) == 4
    assert_ledger_ok(rig)


def test_sync_completions_and_embeddings(rig: GatewayRig) -> None:
    client = rig.client()
    before = balance(rig)
    legacy = client.completions.create(model="chat", prompt="Say hello", max_tokens=10)
    vectors = client.embeddings.create(model="embed", input=["a", "b"])
    spent = before.posted_micros - balance(rig).posted_micros
    assert spent == micros(legacy.usage.model_extra["cost"]) + micros(  # type: ignore[union-attr,index]
        vectors.usage.model_extra["cost"]  # type: ignore[index]
    )
    assert_ledger_ok(rig)


def test_cached_and_reasoning_tokens(rig: GatewayRig) -> None:
    raw = rig.client().chat.completions.with_raw_response.create(model="cached", messages=MESSAGES)
    stored = record(rig, raw.headers["x-request-id"])
    assert (stored.prompt_tokens, stored.cached_tokens, stored.reasoning_tokens) == (1000, 400, 200)
    # 600 uncached * 1.00 + 400 cached * 0.50 + 300 completion (reasoning included) * 2.00
    assert stored.price_micros == 600 + 200 + 600
    assert_ledger_ok(rig)


def test_models_credits_and_generation(rig: GatewayRig) -> None:
    names = {m.id for m in rig.client().models.list().data}
    assert {"chat", "embed", "cached"} <= names
    with rig.http() as http:
        credits = http.get("/v1/credits").json()
        assert credits == {"balance": "10.000000", "held": "0.000000", "available": "10.000000"}
        raw = rig.client().chat.completions.with_raw_response.create(
            model="chat", messages=MESSAGES
        )
        request_id = raw.headers["x-request-id"]
        generation = http.get("/v1/generation", params={"id": request_id}).json()
    assert generation["id"] == request_id
    assert (generation["model"], generation["provider"], generation["upstream_model"]) == (
        "chat",
        "fake",
        "echo",
    )
    assert (generation["prompt_tokens"], generation["completion_tokens"]) == (11, 7)
    assert generation["cost"] == "0.000025" and generation["attempts"] == 1
    assert generation["status"] == "ok"
    # Another customer's request id is not found, and says nothing about it.
    _other_id, _account, other_key = rig.new_customer(1_000_000)
    with rig.http(other_key) as http:
        foreign = http.get("/v1/generation", params={"id": request_id})
        unknown = http.get("/v1/generation", params={"id": "req_nope"})
    for response in (foreign, unknown):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert request_id not in response.text and "fake" not in response.text


# ------------------------------------------------------------------------------- refusals


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) >= {"message", "type", "code"}
    return dict(body["error"])


def test_401_for_missing_wrong_and_revoked_keys(
    rig: GatewayRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-cd-this-is-not-a-real-key-000000000000"
    with httpx.Client(base_url=rig.base_url) as http:
        missing = http.post("/v1/chat/completions", json={"model": "chat", "messages": MESSAGES})
        bad = http.post(
            "/v1/chat/completions",
            json={"model": "chat", "messages": MESSAGES},
            headers={"Authorization": f"Bearer {wrong}"},
        )
    for response in (missing, bad):
        assert response.status_code == 401
        assert _error(response)["code"] == "invalid_api_key"
    assert wrong not in bad.text
    assert all(wrong not in r.getMessage() for r in caplog.records)

    rig.app.state.gateway.keys.ttl_s = 0.5
    try:
        assert rig.http().get("/v1/credits").status_code == 200
        with db.session_scope(engine=rig.engine) as session:
            key_id = session.execute(
                select(ApiKey.id).where(ApiKey.customer_id == rig.customer_id)
            ).scalar_one()
            revoke_api_key(session, customer_id=rig.customer_id, key_id=key_id)
        time.sleep(0.6)
        revoked = rig.http().get("/v1/credits")
        assert revoked.status_code == 401
    finally:
        rig.app.state.gateway.keys.ttl_s = 5.0


def test_402_before_anything_is_sent_upstream(rig: GatewayRig) -> None:
    _customer, account_id, poor_key = rig.new_customer(0)
    sent_before = rig.upstream.count()
    with pytest.raises(openai.APIStatusError) as refused:
        rig.client(poor_key).chat.completions.create(model="chat", messages=MESSAGES)
    assert refused.value.status_code == 402
    assert _error(refused.value.response)["code"] == "insufficient_credits"
    assert rig.upstream.count() == sent_before
    assert balance(rig, account_id).posted_micros == 0
    assert_ledger_ok(rig)


def test_404_for_unknown_and_disallowed_models(rig: GatewayRig) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        rig.client().chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert _error(unknown.value.response)["code"] == "model_not_found"

    from creditdash.accounts.api_keys import KeyLimits, create_api_key

    with db.session_scope(engine=rig.engine) as session:
        _key, limited = create_api_key(
            session,
            customer_id=rig.customer_id,
            name="chat only",
            limits=KeyLimits(allowed_models=("chat",)),
        )
    assert [m.id for m in rig.client(limited).models.list().data] == ["chat"]
    with pytest.raises(openai.NotFoundError):
        rig.client(limited).chat.completions.create(model="cached", messages=MESSAGES)
    rig.client(limited).chat.completions.create(model="chat", messages=MESSAGES)


def test_413_for_an_oversized_body(rig: GatewayRig) -> None:
    huge = {"model": "chat", "messages": [{"role": "user", "content": "x" * (MAX_BODY_BYTES + 1)}]}
    sent_before = rig.upstream.count()
    response = rig.http().post("/v1/chat/completions", json=huge)
    assert response.status_code == 413
    assert _error(response)["code"] == "request_too_large"
    assert rig.upstream.count() == sent_before
    assert records(rig) == []


def test_400_for_bad_json_and_missing_model(rig: GatewayRig) -> None:
    with rig.http() as http:
        not_json = http.post(
            "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
        )
        no_model = http.post("/v1/chat/completions", json={"messages": MESSAGES})
        bad_limit = http.post(
            "/v1/chat/completions", json={"model": "chat", "messages": MESSAGES, "max_tokens": -5}
        )
    assert [r.status_code for r in (not_json, no_model, bad_limit)] == [400, 400, 400]
    assert _error(no_model)["code"] == "missing_model"
    assert_ledger_ok(rig)


def test_429_per_key_rate_and_concurrency_limits(rig: GatewayRig) -> None:
    from creditdash.accounts.api_keys import KeyLimits, create_api_key

    with db.session_scope(engine=rig.engine) as session:
        _k, rpm_key = create_api_key(
            session, customer_id=rig.customer_id, name="rpm", limits=KeyLimits(rpm=2)
        )
        _k, one_key = create_api_key(
            session, customer_id=rig.customer_id, name="one", limits=KeyLimits(concurrency=1)
        )
    with rig.http(rpm_key) as http:
        codes = [
            http.post(
                "/v1/chat/completions", json={"model": "chat", "messages": MESSAGES}
            ).status_code
            for _ in range(3)
        ]
    assert codes == [200, 200, 429]

    results: list[int] = []

    def slow_call() -> None:
        with rig.http(one_key) as http:
            results.append(
                http.post(
                    "/v1/chat/completions", json={"model": "slowok", "messages": MESSAGES}
                ).status_code
            )

    first = threading.Thread(target=slow_call)
    first.start()
    time.sleep(0.3)
    with rig.http(one_key) as http:
        second = http.post("/v1/chat/completions", json={"model": "chat", "messages": MESSAGES})
    first.join()
    assert second.status_code == 429 and _error(second)["code"] == "concurrency_limit_exceeded"
    assert results == [200]
    # The slot is given back when the request ends.
    with rig.http(one_key) as http:
        assert (
            http.post(
                "/v1/chat/completions", json={"model": "chat", "messages": MESSAGES}
            ).status_code
            == 200
        )
    assert_ledger_ok(rig)


# -------------------------------------------------------------------------- upstream trouble


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [("fail500", 502, "upstream_failed"), ("fail429", 429, "rate_limit_exceeded"),
     ("fail401", 502, "upstream_failed"),
     ("hang", 504, "upstream_timeout"), ("redirect", 502, "upstream_failed")],
)  # fmt: skip
def test_upstream_failures_void_the_hold_and_charge_nothing(
    rig: GatewayRig, model: str, status: int, code: str
) -> None:
    before = balance(rig)
    response = rig.http().post("/v1/chat/completions", json={"model": model, "messages": MESSAGES})
    assert response.status_code == status
    assert _error(response)["code"] == code
    assert balance(rig) == before
    stored = record(rig, response.headers["x-request-id"])
    assert (stored.status, stored.price_micros, stored.usage_source) == (
        "upstream_error",
        0,
        "none",
    )
    assert stored.attempts == 1
    assert_ledger_ok(rig)


def test_upstream_4xx_is_passed_on_redacted_and_not_retried(rig: GatewayRig) -> None:
    before = balance(rig)
    sent_before = rig.upstream.count("fail-400-echo")
    response = rig.http().post(
        "/v1/chat/completions", json={"model": "bad400", "messages": MESSAGES}
    )
    assert response.status_code == 400
    assert UPSTREAM_KEY not in response.text
    assert UPSTREAM_HEADER_KEY not in response.text  # echoed back from an extra header
    assert response.text.count("[redacted]") == 2
    assert rig.upstream.count("fail-400-echo") == sent_before + 1
    assert balance(rig) == before
    assert_ledger_ok(rig)


def test_usage_absent_is_estimated_and_never_free(rig: GatewayRig) -> None:
    raw = rig.client().chat.completions.with_raw_response.create(model="nousage", messages=MESSAGES)
    body = raw.parse()
    stored = record(rig, raw.headers["x-request-id"])
    assert stored.usage_source == "estimated"
    assert stored.prompt_tokens > 0 and stored.completion_tokens > 0 and stored.price_micros > 0
    assert body.usage is not None and body.usage.model_extra["estimated"] is True  # type: ignore[index]
    assert micros(body.usage.model_extra["cost"]) == stored.price_micros  # type: ignore[index]
    assert_ledger_ok(rig)


def test_an_estimate_counts_the_images_and_tools_of_the_prompt(rig: GatewayRig) -> None:
    # A 512 x 512 PNG is one tile (85 + 170 tokens); a URL whose size is unseen counts as a
    # 1024-square image (765); the model allows 3000 per part, so neither is clamped.
    png = base64.b64encode(_png(512, 512)).decode()
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}},
    ]
    plain = [{"role": "user", "content": [{"type": "text", "text": "Compare"}]}]
    client = rig.client()
    text_only = client.chat.completions.with_raw_response.create(model="nousage", messages=plain)
    vision = client.chat.completions.with_raw_response.create(
        model="nousage", messages=[{"role": "user", "content": content}]
    )
    base = record(rig, text_only.headers["x-request-id"]).prompt_tokens
    stored = record(rig, vision.headers["x-request-id"])
    assert stored.usage_source == "estimated"
    assert stored.prompt_tokens == base + 255 + 765
    assert_ledger_ok(rig)


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_non_stream_answers_give_their_upstream_connection_back(rig: GatewayRig) -> None:
    # A whole answer is read before its attempt counts (a 200 that is only an error falls
    # through); its connection must then go back to the pool, or the pool runs dry under load.
    client = rig.client()
    client.chat.completions.create(model="chat", messages=MESSAGES)
    pool = rig.app.state.gateway.upstream._pool  # the server loop's pool
    opened = pool._open
    for _ in range(8):
        client.chat.completions.create(model="chat", messages=MESSAGES)
        client.embeddings.create(model="embed", input="hi")
    assert pool._open <= opened + 1
    assert_ledger_ok(rig)


def test_usage_explicitly_zero_is_charged_zero(rig: GatewayRig) -> None:
    before = balance(rig)
    raw = rig.client().chat.completions.with_raw_response.create(model="zero", messages=MESSAGES)
    stored = record(rig, raw.headers["x-request-id"])
    assert (stored.usage_source, stored.price_micros) == ("provider", 0)
    assert balance(rig).posted_micros == before.posted_micros
    assert_ledger_ok(rig)


def test_malformed_stream_ends_with_an_error_event_and_no_done(rig: GatewayRig) -> None:
    with rig.http().stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "malformed", "messages": MESSAGES, "stream": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        lines = [line for line in response.iter_lines() if line]
    assert "[DONE]" not in lines[-1]
    assert json.loads(lines[-1][6:])["error"]["code"] == "upstream_failed"
    stored = record(rig, request_id)
    assert stored.status == "upstream_error_mid_stream"
    assert stored.price_micros > 0  # two chunks reached the client and are charged
    assert_ledger_ok(rig)


def test_client_disconnect_mid_stream_settles_once_from_what_was_produced(rig: GatewayRig) -> None:
    with rig.http().stream(
        "POST", "/v1/chat/completions", json={"model": "slow", "messages": MESSAGES, "stream": True}
    ) as response:
        request_id = response.headers["x-request-id"]
        for i, _line in enumerate(response.iter_lines()):
            if i > 10:
                break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with db.session_scope(engine=rig.engine, readonly=True) as session:
            if session.get(UsageRecord, request_id) is not None:
                break
        time.sleep(0.1)
    stored = record(rig, request_id)
    assert stored.status == "client_disconnected"
    assert stored.usage_source == "estimated"
    assert stored.price_micros > 0
    assert balance(rig).held_micros == 0
    assert_ledger_ok(rig)


# ------------------------------------------------------------------------------ concurrency


def test_sixty_concurrent_requests_against_a_balance_for_ten(rig_any_backend: GatewayRig) -> None:
    rig = rig_any_backend
    body = orjson.dumps({"model": "slowok", "messages": MESSAGES, "max_tokens": 100})
    hold = worst_case_micros(PRICE, prompt_tokens=hold_prompt_tokens(body), max_output_tokens=100)
    _customer, account_id, key = rig.new_customer(10 * hold + hold // 2)
    barrier = threading.Barrier(60)
    statuses: list[int] = []

    def one() -> None:
        with httpx.Client(base_url=rig.base_url, timeout=60) as http:
            barrier.wait()
            response = http.post(
                "/v1/chat/completions",
                content=body,
                headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
            )
            statuses.append(response.status_code)

    threads = [threading.Thread(target=one) for _ in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(statuses) == [200] * 10 + [402] * 50
    final = balance(rig, account_id)
    assert final.held_micros == 0
    assert final.posted_micros == 10 * hold + hold // 2 - 10 * cost_micros(PRICE, FAKE_USAGE)
    assert final.available_micros >= 0
    assert_ledger_ok(rig)


def test_monthly_spend_cap_holds_under_concurrency(rig: GatewayRig) -> None:
    from creditdash.accounts.api_keys import KeyLimits, create_api_key

    body = orjson.dumps({"model": "slowok", "messages": MESSAGES})
    hold = worst_case_micros(PRICE, prompt_tokens=hold_prompt_tokens(body), max_output_tokens=100)
    with db.session_scope(engine=rig.engine) as session:
        _k, capped = create_api_key(
            session,
            customer_id=rig.customer_id,
            name="capped",
            limits=KeyLimits(monthly_spend_cap_micros=2 * hold + hold // 2),
        )
    barrier = threading.Barrier(10)
    statuses: list[int] = []
    codes: list[str] = []

    def one() -> None:
        with rig.http(capped) as http:
            barrier.wait()
            response = http.post(
                "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                codes.append(_error(response)["code"])

    threads = [threading.Thread(target=one) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Two worst cases fit under the cap at once; the other eight would risk passing it.
    assert sorted(statuses) == [200, 200] + [429] * 8
    assert set(codes) == {"spend_cap_reached"}
    # Once those two settled at their (small) actual price, the key has room again.
    with rig.http(capped) as http:
        again = http.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
    assert again.status_code == 200
    other = rig.http().post("/v1/chat/completions", json={"model": "chat", "messages": MESSAGES})
    assert other.status_code == 200  # other keys of the customer are not capped
    assert_ledger_ok(rig)


def test_upstream_is_always_told_the_output_cap_that_was_held(rig: GatewayRig) -> None:
    before = rig.upstream.count()
    rig.client().chat.completions.create(model="chat", messages=MESSAGES)
    assert rig.upstream.seen[before].body["max_tokens"] == 100
    rig.client().chat.completions.create(model="chat", messages=MESSAGES, max_completion_tokens=7)
    assert rig.upstream.seen[before + 1].body["max_completion_tokens"] == 7
    assert "max_tokens" not in rig.upstream.seen[before + 1].body


def test_a_route_takes_the_cap_in_the_field_its_upstream_accepts(rig: GatewayRig) -> None:
    # The reasoning route's upstream refuses max_tokens (as o-series and gpt-5 models do): the
    # held cap goes as max_completion_tokens whether the client sent max_tokens, or no cap.
    before = rig.upstream.count()
    client = rig.client()
    answer = client.chat.completions.create(model="reasoning", messages=MESSAGES, max_tokens=9)
    assert answer.choices[0].message.content
    client.chat.completions.create(model="reasoning", messages=MESSAGES)
    client.chat.completions.create(model="reasoning", messages=MESSAGES, stream=True).close()
    sent = [seen.body for seen in rig.upstream.seen[before:]]
    assert [b.get("max_completion_tokens") for b in sent] == [9, 100, 100]
    assert not any("max_tokens" in b for b in sent)
    # A route left on auto keeps the client's name; completions have only max_tokens.
    client.chat.completions.create(model="chat", messages=MESSAGES, max_completion_tokens=5)
    client.completions.create(model="chat", prompt="Hi", max_tokens=4)
    auto, legacy = (seen.body for seen in rig.upstream.seen[before + 3 :])
    assert (auto["max_completion_tokens"], "max_tokens" in auto) == (5, False)
    assert (legacy["max_tokens"], "max_completion_tokens" in legacy) == (4, False)
    assert_ledger_ok(rig)


def test_bad_stream_flag_and_too_many_prompts_are_refused(rig: GatewayRig) -> None:
    ask = {"model": "chat", "messages": MESSAGES, "stream": "true"}
    with rig.http() as http:
        flag = http.post("/v1/chat/completions", json=ask)
        prompts = http.post("/v1/completions", json={"model": "chat", "prompt": ["a"] * 17})
        best_of = http.post("/v1/completions", json={"model": "chat", "prompt": "a", "best_of": 0})
    assert [flag.status_code, prompts.status_code, best_of.status_code] == [400, 400, 400]
    assert records(rig) == []


def test_running_usage_on_every_chunk_settles_once_from_the_last(rig: GatewayRig) -> None:
    before = balance(rig)
    stream = rig.client().chat.completions.create(
        model="running", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    costs = [c.usage.model_extra.get("cost") for c in chunks if c.usage]  # type: ignore[union-attr]
    assert costs[-1] is not None and all(c is None for c in costs[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Hello from the fake upstream."
    )
    final = TokenUsage(prompt_tokens=11, completion_tokens=6)
    assert before.posted_micros - balance(rig).posted_micros == cost_micros(PRICE, final)
    assert len(records(rig)) == 1
    assert_ledger_ok(rig)


def test_connection_is_pinned_to_the_address_that_was_checked(
    rig: GatewayRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name answers a checked address first and another one afterwards.
    The gateway must connect to the address it checked, never ask DNS again."""
    import socket

    from creditdash.catalog import urlguard
    from creditdash.catalog.importer import import_catalog, parse_catalog

    real = socket.getaddrinfo
    answers = {"count": 0}

    def rebinding(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "upstream.rebind.example":
            answers["count"] += 1
            address = "127.0.0.1" if answers["count"] == 1 else "127.0.0.2"  # nothing there
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))]
        return real(host, port, *args, **kwargs)

    urlguard._resolved.clear()
    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = rig.upstream.port
    catalog = f"""
providers:
  - {{name: rebind, base_url: "http://upstream.rebind.example:{port}/v1", api_key: sk-x-123456}}
models:
  - name: rebound
    price: {{input_per_mtok: "1", output_per_mtok: "1"}}
    routes:
      - provider: rebind
        upstream_model: echo
        cost: {{input_per_mtok: "1", output_per_mtok: "1"}}
"""
    try:
        with db.session_scope(engine=rig.engine) as session:
            import_catalog(session, parse_catalog(catalog))
        rig.app.state.gateway.catalog.invalidate()
        response = rig.http().post(
            "/v1/chat/completions", json={"model": "rebound", "messages": MESSAGES}
        )
    finally:
        urlguard._resolved.clear()
    assert response.status_code == 200, response.text
    assert rig.upstream.seen[-1].headers["host"] == f"upstream.rebind.example:{port}"
    assert answers["count"] == 1
