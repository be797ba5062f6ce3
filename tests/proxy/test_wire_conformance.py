"""Errors and headers clients can act on, through the official openai SDK (httpx where the SDK
cannot show it): request ids everywhere, Retry-After, the provider's 429, 402 details, the
x-credits-* headers, GET /v1/models/{id}, JSON 404/405 under /v1, and CORS."""

from __future__ import annotations

import threading
import time

import anthropic
import httpx
import openai
import pytest
from sqlalchemy import select

from creditdash.accounts.api_keys import KeyLimits, create_api_key
from creditdash.billing.models import Transfer
from creditdash.catalog.prices import Price
from creditdash.core import db
from creditdash.core.money import format_credits
from creditdash.proxy.credit_refusal import HoldTerms, max_tokens_that_fit
from creditdash.proxy.limits import seconds_until
from tests.proxy.conftest import GatewayRig
from tests.proxy.test_gateway import assert_ledger_ok, balance, record

MESSAGES = [{"role": "user", "content": "Say hello"}]
PRICE = Price(1_000_000, 2_000_000, 500_000)


def _key(rig: GatewayRig, limits: KeyLimits) -> str:
    with db.session_scope(engine=rig.engine) as session:
        _k, raw = create_api_key(session, customer_id=rig.customer_id, name="w", limits=limits)
    return raw


def _rid(response: httpx.Response) -> str:
    value = response.headers.get("x-request-id", "")
    assert value.startswith("req_"), dict(response.headers)
    return value


# ----------------------------------------------------------------------- rules, unit-tested


def test_retry_after_rounds_up_and_is_at_least_one() -> None:
    assert seconds_until(10.2, 0.0) == 11
    assert seconds_until(5.0, 5.0) == 1
    assert seconds_until(3.0, 9.0) == 1


def test_max_tokens_that_fit_is_the_largest_cap_whose_worst_case_fits() -> None:
    terms = HoldTerms(PRICE, prompt_tokens=100, multiplier=2, per_choice_cap=100)
    # worst case: 100 prompt x 1.00 + 2m x 2.00 per Mtok = 100 + 4m micros
    assert terms.worst_case(10) == 140
    assert max_tokens_that_fit(terms, 140) == 10
    assert max_tokens_that_fit(terms, 143) == 10
    assert max_tokens_that_fit(terms, 103) is None  # not even 1 fits
    assert max_tokens_that_fit(terms, 10_000) == 99  # only smaller than what was asked
    embeddings = HoldTerms(PRICE, prompt_tokens=100, multiplier=1, per_choice_cap=0)
    assert max_tokens_that_fit(embeddings, 10_000) is None


# --------------------------------------------------------------------------- request ids


def test_every_v1_answer_has_a_request_id(rig: GatewayRig) -> None:
    with rig.http() as http, rig.http("sk-wrong-key-0123456789") as bad:
        answers = [
            bad.post("/v1/chat/completions", json={"model": "chat", "messages": MESSAGES}),
            bad.get("/v1/models"),
            bad.post("/v1/responses", json={"model": "chat", "input": "hi"}),
            http.post("/v1/chat/completions", content=b"not json"),
            http.post("/v1/chat/completions", json={"model": "nope", "messages": MESSAGES}),
            http.post("/v1/chat/completions", content=b"x" * (65 * 1024)),
            http.get("/v1/models"),
            http.get("/v1/credits"),
            http.get("/v1/nothing-here"),
            http.get("/v1/generation?id=req_unknown"),
            http.get("/v1/responses/resp_unknown"),
        ]
        messages = http.post(
            "/v1/messages",
            headers={"x-api-key": "sk-wrong-key-0123456789", "anthropic-version": "2023-06-01"},
            json={"model": "claude", "max_tokens": 5, "messages": MESSAGES},
        )
    assert [a.status_code for a in answers] == [401, 401, 401, 400, 404, 413, 200, 200, 404,
                                                404, 404]  # fmt: skip
    ids = [_rid(a) for a in [*answers, messages]]
    assert len(set(ids)) == len(ids)
    assert messages.status_code == 401
    assert messages.json()["error"]["type"] == "authentication_error"


def test_sdk_errors_carry_the_request_id(rig: GatewayRig) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        rig.client().chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_")


# --------------------------------------------------------------------------- Retry-After


def test_key_rpm_429_says_when_a_slot_frees(rig: GatewayRig) -> None:
    client = rig.client(_key(rig, KeyLimits(rpm=1)))
    client.chat.completions.create(model="chat", messages=MESSAGES)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="chat", messages=MESSAGES)  # type: ignore[arg-type]
    headers = caught.value.response.headers
    assert 55 <= int(headers["retry-after"]) <= 60
    assert headers["x-request-id"].startswith("req_")
    assert caught.value.code == "rate_limit_exceeded"
    assert_ledger_ok(rig)


def test_key_concurrency_429_has_retry_after(rig: GatewayRig) -> None:
    one = _key(rig, KeyLimits(concurrency=1))
    first = threading.Thread(
        target=lambda: rig.client(one).chat.completions.create(model="slowok", messages=MESSAGES)  # type: ignore[arg-type]
    )
    first.start()
    time.sleep(0.3)
    with pytest.raises(openai.RateLimitError) as caught:
        rig.client(one).chat.completions.create(model="chat", messages=MESSAGES)  # type: ignore[arg-type]
    first.join()
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "concurrency_limit_exceeded"
    assert_ledger_ok(rig)


@pytest.mark.parametrize(
    ("model", "retry_after"),
    [("fail429retry", "7"), ("fail429date", "Wed, 21 Oct 2026 07:28:00 GMT"), ("fail429", None)],
)
def test_upstream_429_reaches_the_client_as_429(
    rig: GatewayRig, model: str, retry_after: str | None
) -> None:
    before = balance(rig)
    with pytest.raises(openai.RateLimitError) as caught:
        rig.client().chat.completions.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]
    error = caught.value
    assert error.status_code == 429 and error.code == "rate_limit_exceeded"
    assert error.type == "rate_limit_error"
    assert "upstream" in error.message
    assert error.response.headers.get("retry-after") == retry_after
    stored = record(rig, error.response.headers["x-request-id"])
    assert (stored.status, stored.http_status, stored.price_micros) == ("upstream_error", 429, 0)
    assert balance(rig) == before
    assert_ledger_ok(rig)


def test_upstream_429_stream_is_429_before_the_stream(rig: GatewayRig) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        rig.client().chat.completions.create(model="fail429retry", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert caught.value.response.headers["retry-after"] == "7"
    assert_ledger_ok(rig)


# ----------------------------------------------------------------------------------- 402


def test_402_states_available_required_and_a_max_tokens_that_fits(rig: GatewayRig) -> None:
    _cid, account_id, key = rig.new_customer(150)
    with pytest.raises(openai.APIStatusError) as caught:
        rig.client(key).chat.completions.create(
            model="chat",
            messages=MESSAGES,
            max_tokens=100,  # type: ignore[arg-type]
        )
    error = caught.value
    assert error.status_code == 402
    body = error.body
    assert isinstance(body, dict)
    assert body["code"] == "insufficient_credits"
    assert body["available"] == format_credits(150)
    required = int(body["required"].replace(".", ""))
    assert required > 150
    fit = body["max_tokens_that_fit"]
    assert 1 <= fit < 100
    assert f"max_tokens of {fit}" in body["message"]
    assert error.response.headers["x-request-id"].startswith("req_")
    # The suggestion is honest: that cap is held and served.
    done = rig.client(key).chat.completions.create(
        model="chat",
        messages=MESSAGES,
        max_tokens=fit,  # type: ignore[arg-type]
    )
    assert done.usage is not None
    after = balance(rig, account_id)
    assert after.held_micros == 0 and after.posted_micros == 150 - 25
    assert_ledger_ok(rig)


def test_402_without_a_suggestion_when_nothing_fits(rig: GatewayRig) -> None:
    _cid, account_id, key = rig.new_customer(1)
    with pytest.raises(openai.APIStatusError) as caught:
        rig.client(key).chat.completions.create(model="chat", messages=MESSAGES)  # type: ignore[arg-type]
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["available"] == "0.000001" and "max_tokens_that_fit" not in body
    assert balance(rig, account_id).posted_micros == 1
    assert_ledger_ok(rig)


# ----------------------------------------------------------------------- x-credits-* headers


def test_non_stream_answer_says_charged_and_remaining(rig_any_backend: GatewayRig) -> None:
    rig = rig_any_backend
    raw = rig.client().chat.completions.with_raw_response.create(
        model="chat",
        messages=MESSAGES,
        max_tokens=50,  # type: ignore[arg-type]
    )
    raw.parse()
    after = balance(rig)
    assert raw.headers["x-credits-charged"] == format_credits(25)
    assert raw.headers["x-credits-remaining"] == format_credits(after.posted_micros)
    assert after.posted_micros == 10_000_000 - 25
    assert_ledger_ok(rig)


def test_stream_says_available_after_its_hold(rig_any_backend: GatewayRig) -> None:
    rig = rig_any_backend
    with rig.client().chat.completions.with_streaming_response.create(
        model="chat",
        messages=MESSAGES,
        max_tokens=50,
        stream=True,  # type: ignore[arg-type]
    ) as response:
        available = response.headers["x-credits-available"]
        request_id = response.headers["x-request-id"]
        for _ in response.iter_lines():
            pass
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        held = session.execute(
            select(Transfer.amount_micros).where(
                Transfer.reference == request_id, Transfer.kind == "pending"
            )
        ).scalar_one()
    assert held > 100  # the output cap at the output price, and the prompt
    assert available == format_credits(10_000_000 - held)
    assert balance(rig).posted_micros == 10_000_000 - 25
    assert_ledger_ok(rig)


# ----------------------------------------------------------------------- GET /v1/models/{id}


def test_retrieve_a_model(rig: GatewayRig) -> None:
    found = rig.client().models.retrieve("chat")
    assert (found.id, found.object, found.owned_by) == ("chat", "model", "creditdash")
    assert isinstance(found.created, int)
    with pytest.raises(openai.NotFoundError) as caught:
        rig.client().models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"


def test_retrieve_a_model_in_anthropics_shape(rig: GatewayRig) -> None:
    client = anthropic.Anthropic(api_key=rig.key, base_url=rig.base_url, max_retries=0)
    found = client.models.retrieve("claude")
    assert (found.id, found.type) == ("claude", "model")
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


# ------------------------------------------------------------------- unknown paths, methods


def test_unknown_paths_are_json_errors_the_sdk_reads(rig: GatewayRig) -> None:
    client = rig.client()
    calls = [
        lambda: client.images.generate(prompt="a cat"),
        lambda: client.moderations.create(input="hi"),
        lambda: client.audio.speech.create(model="tts", voice="alloy", input="hi"),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.code == "unknown_url"
        assert "Unknown request URL (POST /v1/" in caught.value.message
        assert caught.value.response.headers["x-request-id"].startswith("req_")


def test_a_wrong_method_is_405_with_allow(rig: GatewayRig) -> None:
    with rig.http() as http:
        wrong = http.get("/v1/chat/completions")
        put = http.put("/v1/models")
    assert wrong.status_code == 405 and put.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert wrong.headers["allow"] == "POST"
    _rid(wrong)


def test_paths_outside_v1_are_left_alone(rig: GatewayRig) -> None:
    with rig.http() as http:
        outside = http.get("/not-the-gateway")
    assert outside.status_code == 404
    assert "x-request-id" not in outside.headers
    assert not outside.headers["content-type"].startswith("application/json")


# --------------------------------------------------------------------------------- CORS


def test_preflight_is_answered_without_a_key(rig: GatewayRig) -> None:
    asked = "authorization, content-type, x-stainless-os, x-stainless-retry-count"
    with httpx.Client(base_url=rig.base_url) as http:
        answer = http.options(
            "/v1/chat/completions",
            headers={"origin": "https://app.example", "access-control-request-method": "POST",
                     "access-control-request-headers": asked},
        )  # fmt: skip
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["access-control-allow-headers"] == asked
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert "DELETE" in answer.headers["access-control-allow-methods"]
    assert int(answer.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in answer.headers


def test_answers_to_a_browser_expose_the_headers(rig: GatewayRig) -> None:
    with rig.http() as http:
        answer = http.post(
            "/v1/chat/completions",
            headers={"origin": "https://app.example"},
            json={"model": "chat", "messages": MESSAGES},
        )
        refused = http.get("/v1/models", headers={"origin": "https://app.example"})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    exposed = answer.headers["access-control-expose-headers"]
    for name in ("x-request-id", "x-credits-charged", "x-credits-remaining", "retry-after"):
        assert name in exposed
    assert refused.headers["access-control-allow-origin"] == "*"
    assert_ledger_ok(rig)


def test_only_configured_origins_get_cors_headers(rig: GatewayRig) -> None:
    from creditdash.proxy.cors import CorsPolicy

    app = rig.app
    saved = app.cors  # type: ignore[attr-defined]
    app.cors = CorsPolicy("https://good.example, https://other.example/")  # type: ignore[attr-defined]
    try:
        with rig.http() as http:
            good = http.get("/v1/models", headers={"origin": "https://good.example"})
            other = http.get("/v1/models", headers={"origin": "https://other.example"})
            bad = http.get("/v1/models", headers={"origin": "https://evil.example"})
            bad_preflight = http.options(
                "/v1/models",
                headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
            )
    finally:
        app.cors = saved  # type: ignore[attr-defined]
    assert good.headers["access-control-allow-origin"] == "https://good.example"
    assert good.headers["vary"] == "origin"
    assert other.headers["access-control-allow-origin"] == "https://other.example"
    assert bad.status_code == 200 and "access-control-allow-origin" not in bad.headers
    assert bad_preflight.status_code == 204
    assert "access-control-allow-origin" not in bad_preflight.headers
