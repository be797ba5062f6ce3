"""Idempotency-Key, and a client that leaves before any response byte, driven by the openai
SDK against the fake upstream on loopback (its slow-3s model answers after 3 s)."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest
from sqlalchemy import select

from creditdash.billing.models import UsageRecord
from creditdash.core import db
from creditdash.proxy import idempotency_keys
from creditdash.proxy.errors import GatewayError
from creditdash.proxy.idempotency import fingerprint, keep_answer, parse_key, replay
from tests.proxy.conftest import GatewayRig
from tests.proxy.test_gateway import MESSAGES, assert_ledger_ok, balance

SLOW = "slow3s"


def _records(rig: GatewayRig, model: str) -> list[UsageRecord]:
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        rows = session.execute(select(UsageRecord).where(UsageRecord.public_model == model))
        return list(rows.scalars())


def _wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _client(rig: GatewayRig, timeout: float, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(api_key=key or rig.key, base_url=rig.base_url + "/v1",
                         timeout=timeout, max_retries=1)  # fmt: skip


# ------------------------------------------------------------------------------ the rules


def test_key_shape() -> None:
    assert parse_key("k-1") == "k-1"
    assert parse_key("x" * 255)
    for bad in ("", "x" * 256, "caf\u00e9", "tab\there"):
        with pytest.raises(GatewayError) as raised:
            parse_key(bad)
        assert raised.value.status == 400


def test_fingerprint_covers_endpoint_and_body() -> None:
    assert fingerprint("chat", b"{}") == fingerprint("chat", b"{}")
    assert fingerprint("chat", b"{}") != fingerprint("completions", b"{}")
    assert fingerprint("chat", b"{}") != fingerprint("chat", b"{ }")


def test_only_charged_answers_are_kept() -> None:
    assert keep_answer(True) and not keep_answer(False) and not keep_answer(None)


def test_a_done_row_without_its_body_replays_as_409() -> None:
    row = idempotency_keys.Row("x", "req_1", idempotency_keys.DONE, 200, "application/json", None)
    with pytest.raises(GatewayError) as raised:
        replay(row)
    assert (raised.value.status, raised.value.code) == (409, "idempotency_result_unavailable")
    stored = replay(idempotency_keys.Row("x", "req_1", "done", 200, "application/json", b"{}"))
    assert stored.headers["x-request-id"] == "req_1"
    assert stored.headers["idempotent-replayed"] == "true"


# ------------------------------------------------------------------------- over the wire


def test_sdk_timeout_with_a_key_runs_once_and_the_retry_gets_the_answer(rig: GatewayRig) -> None:
    before = balance(rig)
    seen = rig.upstream.count("slow-3s")
    headers = {"Idempotency-Key": "k-1"}
    with pytest.raises(openai.APITimeoutError):
        _client(rig, 1).chat.completions.create(model=SLOW, messages=MESSAGES,
                                                extra_headers=headers)  # fmt: skip
    raw = _client(rig, 30).chat.completions.with_raw_response.create(
        model=SLOW, messages=MESSAGES, extra_headers=headers
    )
    assert raw.headers["idempotent-replayed"] == "true"
    assert raw.parse().choices[0].message.content == "Hello from the fake upstream."
    assert rig.upstream.count("slow-3s") - seen == 1
    records = _records(rig, SLOW)
    assert len(records) == 1 and records[0].status == "ok"
    assert raw.headers["x-request-id"] == records[0].id
    assert before.posted_micros - balance(rig).posted_micros == records[0].price_micros > 0
    # Again: the same answer, nothing more charged.
    again = _client(rig, 30).chat.completions.with_raw_response.create(
        model=SLOW, messages=MESSAGES, extra_headers=headers
    )
    assert again.http_response.content == raw.http_response.content
    assert before.posted_micros - balance(rig).posted_micros == records[0].price_micros
    assert_ledger_ok(rig)


def test_sdk_timeout_without_a_key_cancels_and_charges_nothing(rig: GatewayRig) -> None:
    before = balance(rig)
    closed = len(rig.upstream.closed)
    with pytest.raises(openai.APITimeoutError):
        _client(rig, 1).chat.completions.create(model=SLOW, messages=MESSAGES)
    _wait_for(lambda: len(_records(rig, SLOW)) == 2)
    _wait_for(lambda: len(rig.upstream.closed) - closed == 2)
    for record in _records(rig, SLOW):
        assert (record.status, record.http_status, record.usage_source) == (
            "client_disconnected", 499, "none")  # fmt: skip
        assert record.price_micros == 0
    assert balance(rig) == before
    assert_ledger_ok(rig)


def test_same_key_other_body_is_422_and_keys_are_per_customer(rig: GatewayRig) -> None:
    headers = {"Idempotency-Key": "k-body"}
    client = rig.client()
    client.chat.completions.create(model="chat", messages=MESSAGES, extra_headers=headers)
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}],
                                       extra_headers=headers)  # fmt: skip
    assert raised.value.code == "idempotency_key_reused"
    with pytest.raises(openai.UnprocessableEntityError):  # another endpoint, same key
        client.completions.create(model="chat", prompt="hi", extra_headers=headers)
    _, _, other_key = rig.new_customer(10_000_000)
    raw = rig.client(other_key).chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "x"}], extra_headers=headers
    )
    assert "idempotent-replayed" not in raw.headers
    assert len(_records(rig, "chat")) == 2
    assert_ledger_ok(rig)


def test_a_stream_is_replayed_as_its_bytes(rig: GatewayRig) -> None:
    before = balance(rig)
    body = {"model": "chat", "messages": MESSAGES, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    headers = {"Idempotency-Key": "k-stream"}
    with rig.http() as http:
        first = http.post("/v1/chat/completions", json=body, headers=headers)
        charged = before.posted_micros - balance(rig).posted_micros
        # The answer is stored once the stream ended and its settlement ran.
        _wait_for(lambda: _state(rig, "k-stream") == "done")
        second = http.post("/v1/chat/completions", json=body, headers=headers)
    assert first.headers["content-type"].startswith("text/event-stream")
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["content-type"].startswith("text/event-stream")
    assert second.content == first.content and first.content.endswith(b"data: [DONE]\n\n")
    assert second.headers["x-request-id"] == first.headers["x-request-id"]
    assert before.posted_micros - balance(rig).posted_micros == charged > 0
    # The SDK reads a replay as a stream.
    texts = []
    for _ in range(2):
        stream = rig.client().chat.completions.create(
            model="chat", messages=MESSAGES, stream=True, extra_headers={"Idempotency-Key": "k-s"}
        )
        texts.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
        _wait_for(lambda: _state(rig, "k-s") == "done")
    assert texts[0] == texts[1] == "Hello from the fake upstream."
    assert len(_records(rig, "chat")) == 2
    assert_ledger_ok(rig)


def _state(rig: GatewayRig, key: str) -> str | None:
    row = idempotency_keys.load(customer_id=rig.customer_id, key=key)
    return row.state if row is not None else None


def test_concurrent_duplicates_run_once(rig_any_backend: GatewayRig) -> None:
    rig = rig_any_backend
    before = balance(rig)
    seen = rig.upstream.count("slow-3s")
    headers = {"Idempotency-Key": "k-dup"}
    answers: list[httpx.Response] = []

    def call() -> None:
        with rig.http() as http:
            answers.append(http.post("/v1/chat/completions", headers=headers,
                                     json={"model": SLOW, "messages": MESSAGES}))  # fmt: skip

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].content == answers[1].content
    assert sorted(a.headers.get("idempotent-replayed", "") for a in answers) == ["", "true"]
    assert rig.upstream.count("slow-3s") - seen == 1
    records = _records(rig, SLOW)
    assert len(records) == 1
    assert before.posted_micros - balance(rig).posted_micros == records[0].price_micros
    assert_ledger_ok(rig)


def test_a_refusal_releases_the_key(rig: GatewayRig) -> None:
    _, _, poor_key = rig.new_customer(0)
    headers = {"Idempotency-Key": "k-402"}
    with pytest.raises(openai.APIStatusError) as raised:
        rig.client(poor_key).chat.completions.create(model="chat", messages=MESSAGES,
                                                     extra_headers=headers)  # fmt: skip
    assert raised.value.status_code == 402
    with db.session_scope(engine=rig.engine, readonly=True) as session:
        rows = session.execute(select(idempotency_keys.IdempotencyKey)).scalars().all()
    assert rows == []
    # An upstream failure (hold voided) releases it too: the retry runs again.
    seen = rig.upstream.count("fail-500")
    for _ in range(2):
        with pytest.raises(openai.APIStatusError):
            rig.client().chat.completions.create(
                model="fail500", messages=MESSAGES, extra_headers={"Idempotency-Key": "k-500"}
            )
    assert rig.upstream.count("fail-500") - seen == 2
    assert_ledger_ok(rig)


def test_a_bad_key_is_400_in_each_shape(rig: GatewayRig) -> None:
    with rig.http() as http:
        chat = http.post("/v1/chat/completions", headers={"Idempotency-Key": "x" * 256},
                         json={"model": "chat", "messages": MESSAGES})  # fmt: skip
        messages = http.post(
            "/v1/messages", headers={"Idempotency-Key": "x" * 256, "anthropic-version": "1"},
            json={"model": "claude", "max_tokens": 10, "messages": MESSAGES},
        )  # fmt: skip
    assert chat.status_code == 400
    assert chat.json()["error"]["code"] == "invalid_idempotency_key"
    assert messages.status_code == 400 and messages.json()["type"] == "error"


def test_stream_left_before_its_first_event_charges_nothing(rig: GatewayRig) -> None:
    before = balance(rig)
    with pytest.raises(openai.APITimeoutError):
        stream = _client(rig, 1).chat.completions.create(model=SLOW, messages=MESSAGES,
                                                         stream=True)  # fmt: skip
        list(stream)
    _wait_for(lambda: len(_records(rig, SLOW)) >= 1)
    time.sleep(0.3)
    for record in _records(rig, SLOW):
        assert (record.status, record.http_status, record.price_micros) == (
            "client_disconnected", 499, 0)  # fmt: skip
    assert balance(rig) == before
    assert_ledger_ok(rig)


def test_housekeeping_deletes_expired_rows(rig: GatewayRig) -> None:
    from datetime import timedelta

    from creditdash.core.timeutil import utcnow
    from creditdash.jobs import expire_idempotency_keys_once

    assert (
        idempotency_keys.claim(
            customer_id=rig.customer_id,
            key="old",
            body_sha256="a",
            request_id="req_1",
            abandoned_after=timedelta(hours=1),
        )
        is None
    )
    with db.session_scope(engine=rig.engine) as session:
        row = session.get(idempotency_keys.IdempotencyKey, (rig.customer_id, "old"))
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    assert expire_idempotency_keys_once() == 1
    assert _state(rig, "old") is None


def test_responses_and_messages_replay_in_their_shapes(rig: GatewayRig) -> None:
    before = balance(rig)
    headers = {"Idempotency-Key": "k-wires"}
    client = rig.client()
    first = client.responses.with_raw_response.create(
        model="chat", input="Say hello", extra_headers=headers
    )
    second = client.responses.with_raw_response.create(
        model="chat", input="Say hello", extra_headers=headers
    )
    assert second.headers["idempotent-replayed"] == "true"
    assert second.parse().id == first.parse().id
    with rig.http() as http:
        body = {"model": "claude", "max_tokens": 20, "messages": MESSAGES}
        anthropic = {"anthropic-version": "2023-06-01", "Idempotency-Key": "k-msg"}
        one = http.post("/v1/messages", json=body, headers=anthropic)
        two = http.post("/v1/messages", json=body, headers=anthropic)
        reused = http.post("/v1/messages", json={**body, "max_tokens": 21}, headers=anthropic)
    assert one.status_code == 200 and two.headers["idempotent-replayed"] == "true"
    assert two.content == one.content
    assert reused.status_code == 422 and reused.json()["type"] == "error"
    charged = sum(r.price_micros for r in _records(rig, "chat") + _records(rig, "claude"))
    assert len(_records(rig, "chat")) == 1 and len(_records(rig, "claude")) == 1
    assert before.posted_micros - balance(rig).posted_micros == charged
    assert_ledger_ok(rig)
