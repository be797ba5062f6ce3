"""GET /metrics: the counters move by exactly what the gateway and the webhooks did, the scrape
is off unless enabled and needs its token, and several processes report through one directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from creditdash.accounts.api_keys import create_api_key
from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.catalog.prices import Price, TokenUsage, cost_micros
from creditdash.core import db, metrics
from creditdash.core.settings import Settings
from creditdash.server import create_app
from creditdash.web.metrics import metrics_routes
from tests.billing.shop import SANDBOX_SECRET, _shop, fake_stripe, session_event
from tests.conftest import free_port, stop_process_group, wait_for_port
from tests.factories import funded_customer
from tests.proxy.conftest import MAX_BODY_BYTES, GatewayRig, _rig, catalog_yaml
from tests.proxy.fake_anthropic import FakeAnthropic
from tests.proxy.fake_upstream import FakeUpstream, ServerThread
from tests.proxy.test_scaleout import pg_engine

# Fixtures of other modules: the payments' fake Stripe, the scale-out test's PostgreSQL engine.
__all__ = ["fake_stripe", "pg_engine"]

TOKEN = "scrape-token-0123456789abcdef"
PRICE = Price(1_000_000, 2_000_000, 500_000)
FAKE_USAGE = TokenUsage(prompt_tokens=11, completion_tokens=7)
MESSAGES = [{"role": "user", "content": "Say hello"}]
REPO = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metrics_server() -> Iterator[tuple[Starlette, str]]:
    """The gateway app (with the payment webhooks) with metrics on and a scrape token."""
    app = create_app(
        standalone=False,
        settings=Settings(
            allow_private_upstreams=True,
            max_body_bytes=MAX_BODY_BYTES,
            metrics_enabled=True,
            metrics_token=TOKEN,
            sandbox_webhook_secret=SANDBOX_SECRET,
        ),
    )
    server = ServerThread(app, free_port())
    server.start()
    yield app, f"http://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture
def mrig(
    engine: Engine,
    fake_upstream: FakeUpstream,
    fake_anthropic: FakeAnthropic,
    metrics_server: tuple[Starlette, str],
    monkeypatch: pytest.MonkeyPatch,
) -> GatewayRig:
    monkeypatch.setenv("CREDITDASH_METRICS_ENABLED", "true")  # recording follows the process's
    return _rig(engine, fake_upstream, fake_anthropic, metrics_server, monkeypatch)


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape(base_url: str) -> Samples:
    answer = httpx.get(f"{base_url}/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(answer.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def eventually(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Settlement of a stream may finish just after its last byte reached the client."""
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_counters_move_by_exactly_the_requests_made(mrig: GatewayRig) -> None:
    before = scrape(mrig.base_url)
    client = mrig.client()

    completion = client.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=50)
    assert completion.usage is not None
    stream = client.chat.completions.create(
        model="chat", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    streamed_usage = chunks[-1].usage
    assert streamed_usage is not None
    streamed_micros = int(Decimal(str(streamed_usage.model_extra["cost"])) * 1_000_000)  # type: ignore[index]
    _customer, _account, poor_key = mrig.new_customer(0)
    with pytest.raises(openai.APIStatusError) as refused:
        mrig.client(poor_key).chat.completions.create(model="chat", messages=MESSAGES)
    assert refused.value.status_code == 402
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="fail500", messages=MESSAGES)
    assert failed.value.status_code == 502

    expected = {
        ("creditdash_requests_total", (("model", "chat"), ("provider", "fake"),
                                       ("status", "ok"))): 2,
        ("creditdash_requests_total", (("model", "chat"), ("provider", ""),
                                       ("status", "insufficient_credits"))): 1,
        ("creditdash_requests_total", (("model", "fail500"), ("provider", ""),
                                       ("status", "upstream_error"))): 1,
        ("creditdash_credits_charged_micros_total", (("model", "chat"), ("provider", "fake"))):
            cost_micros(PRICE, FAKE_USAGE) + streamed_micros,
        ("creditdash_request_latency_seconds_count", (("model", "chat"), ("stream", "false"))): 1,
        ("creditdash_request_latency_seconds_count", (("model", "chat"), ("stream", "true"))): 1,
        ("creditdash_request_latency_seconds_count", (("model", "fail500"),
                                                      ("stream", "false"))): 1,
        ("creditdash_time_to_first_byte_seconds_count", (("model", "chat"),
                                                         ("stream", "false"))): 1,
        ("creditdash_time_to_first_byte_seconds_count", (("model", "chat"),
                                                         ("stream", "true"))): 1,
        ("creditdash_upstream_attempts_total", (("provider", "fake"), ("result", "ok"))): 2,
        ("creditdash_upstream_attempts_total", (("provider", "fake"), ("result", "5xx"))): 1,
        ("creditdash_upstream_failures_total", (("provider", "fake"), ("kind", "5xx"))): 1,
    }  # fmt: skip

    def moved(after: Samples) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (name, labels): value(after, name, **dict(labels)) - value(before, name, **dict(labels))
            for name, labels in expected
        }

    eventually(lambda: moved(scrape(mrig.base_url)) == expected)
    after = scrape(mrig.base_url)
    assert moved(after) == expected

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Nothing else of this kind moved: no second failure, no refusal of another status.
    assert delta("creditdash_upstream_failures_total", provider="fake", kind="timeout") == 0
    assert value(after, "creditdash_open_holds") == value(before, "creditdash_open_holds")
    # Read from the database at the scrape: nothing is held once every request settled.
    assert value(after, "creditdash_database_up") == 1
    assert value(after, "creditdash_held_micros") == 0
    assert value(after, "creditdash_outbox_backlog", queue="mail") >= 0
    # Never a key or a customer in a label.
    labels = {v for (_name, pairs) in after for _k, v in pairs}
    assert mrig.key not in labels and mrig.customer_id not in labels


def test_a_stream_in_flight_is_an_open_hold_until_it_ends(mrig: GatewayRig) -> None:
    from creditdash.billing import ledger

    before = scrape(mrig.base_url)
    body = {"model": "slow", "messages": MESSAGES, "stream": True}
    with mrig.http() as http, http.stream("POST", "/v1/chat/completions", json=body) as answer:
        assert answer.status_code == 200
        chunks = answer.iter_bytes()  # kept: a dropped iterator closes the connection
        next(chunks)
        during = scrape(mrig.base_url)
        with db.session_scope(engine=mrig.engine, readonly=True) as session:
            held = ledger.get_balance(session, mrig.account_id).held_micros
    assert value(during, "creditdash_open_holds") - value(before, "creditdash_open_holds") == 1
    assert held > 0 and value(during, "creditdash_held_micros") == held
    # The client left mid-stream: the relay settles what was sent, and the hold is closed.
    left = {"model": "slow", "provider": "fake", "status": "client_disconnected"}

    def settled() -> bool:
        after = scrape(mrig.base_url)
        ended = value(after, "creditdash_requests_total", **left) - value(
            before, "creditdash_requests_total", **left
        )
        return ended == 1 and value(after, "creditdash_held_micros") == 0

    eventually(settled)
    assert settled()
    after = scrape(mrig.base_url)
    assert value(after, "creditdash_open_holds") == value(before, "creditdash_open_holds")


def test_limit_and_spend_cap_refusals_are_counted(mrig: GatewayRig) -> None:
    from creditdash.accounts.api_keys import KeyLimits

    with db.session_scope(engine=mrig.engine) as session:
        _k, rpm_key = create_api_key(
            session, customer_id=mrig.customer_id, name="rpm", limits=KeyLimits(rpm=1)
        )
        _k, capped_key = create_api_key(
            session, customer_id=mrig.customer_id, name="capped",
            limits=KeyLimits(monthly_spend_cap_micros=1),
        )  # fmt: skip
    before = scrape(mrig.base_url)
    body = {"model": "chat", "messages": MESSAGES}
    with mrig.http(rpm_key) as http:
        codes = [http.post("/v1/chat/completions", json=body).status_code for _ in range(2)]
    assert codes == [200, 429]
    with mrig.http(capped_key) as http:
        capped = http.post("/v1/chat/completions", json=body)
    assert capped.status_code == 429 and capped.json()["error"]["code"] == "spend_cap_reached"
    statuses = ("ok", "rate_limit_exceeded", "spend_cap_reached", "concurrency_limit_exceeded")

    def moved() -> dict[str, float]:
        after = scrape(mrig.base_url)

        def count(samples: Samples, status: str) -> float:
            name = "creditdash_requests_total"
            return sum(value(samples, name, model="chat", provider=p, status=status)
                       for p in ("", "fake"))  # fmt: skip

        return {status: count(after, status) - count(before, status) for status in statuses}

    expected = {
        "ok": 1, "rate_limit_exceeded": 1, "spend_cap_reached": 1, "concurrency_limit_exceeded": 0
    }  # fmt: skip
    eventually(lambda: moved() == expected)
    assert moved() == expected


def test_webhooks_are_counted_by_outcome(
    engine: Engine,
    metrics_server: tuple[Starlette, str],
    fake_stripe: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CREDITDASH_METRICS_ENABLED", "true")
    shop = _shop(engine, metrics_server, fake_stripe, monkeypatch, use_stripe=False)  # type: ignore[arg-type]
    base_url = metrics_server[1]
    before = scrape(base_url)
    order = shop.order()
    event = session_event(order)
    assert shop.post_event(event).status_code == 200  # credited
    assert shop.post_event(event).status_code == 200  # the same event again: duplicate
    assert shop.post_event(event, secret="whsec_wrong_secret_0000000000").status_code == 400
    unknown = {**event, "id": "evt_unknown_type", "type": "customer.created"}
    assert shop.post_event(unknown).json()["outcome"] == "ignored"
    after = scrape(base_url)
    moved = {
        outcome: value(after, "creditdash_checkout_webhooks_total", provider="sandbox",
                       outcome=outcome)
        - value(before, "creditdash_checkout_webhooks_total", provider="sandbox", outcome=outcome)
        for outcome in ("credited", "duplicate", "rejected_signature", "ignored", "amount_mismatch")
    }  # fmt: skip
    assert moved == {
        "credited": 1,
        "duplicate": 1,
        "rejected_signature": 1,
        "ignored": 1,
        "amount_mismatch": 0,
    }
    assert shop.available() == order.credits_micros + order.bonus_micros


# ------------------------------------------------------------------------ enabled, token


def _client(settings: Settings) -> TestClient:
    return TestClient(Starlette(routes=metrics_routes(settings)))


def test_disabled_metrics_answer_404(sqlite_engine: Engine) -> None:
    answer = _client(Settings(metrics_enabled=False)).get("/metrics")
    assert answer.status_code == 404
    assert "creditdash_" not in answer.text


def test_a_token_is_required_when_set(sqlite_engine: Engine) -> None:
    client = _client(Settings(metrics_enabled=True, metrics_token=TOKEN))
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
        answer = client.get("/metrics", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "creditdash_" not in answer.text
    ok = client.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and "creditdash_database_up 1.0" in ok.text


def test_without_a_token_anyone_reaching_it_may_scrape(sqlite_engine: Engine) -> None:
    answer = _client(Settings(metrics_enabled=True)).get("/metrics")
    assert answer.status_code == 200 and "creditdash_database_up 1.0" in answer.text


def test_a_database_that_does_not_answer_is_reported_not_raised(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from creditdash.core import db

    broken = db.make_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")
    monkeypatch.setattr(db, "get_engine", lambda: broken)
    answer = _client(Settings(metrics_enabled=True)).get("/metrics")
    assert answer.status_code == 200
    samples = parse(answer.text)
    assert value(samples, "creditdash_database_up") == 0
    assert ("creditdash_held_micros", frozenset()) not in samples


# -------------------------------------------------------------------------- multiprocess

_WORKER = """
import sys
from creditdash.core import metrics
requests, charged, holds, linger = (int(a) for a in sys.argv[1:5])
for _ in range(requests):
    metrics.request_settled(model="chat", provider="fake", status="ok", stream=False,
                            latency_s=0.2, ttfb_s=0.1, charged_micros=charged,
                            attempts=[("fake", "ok", 200)])
for _ in range(holds):
    metrics.hold_opened()
metrics.webhook_received("stripe", "credited")
print("recorded", flush=True)
if linger:
    sys.stdin.readline()
"""


def _worker(directory: Path, *args: int) -> subprocess.Popen[str]:
    env = {**os.environ, metrics.MULTIPROC_ENV: str(directory), "PYTHONPATH": str(REPO),
           "CREDITDASH_METRICS_ENABLED": "true"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER, *map(str, args)],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline().strip() == "recorded"
    return process


def test_one_scrape_sums_every_worker_process(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Set through monkeypatch first, so the variable prepare sets is gone again afterwards.
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path / "metrics"))
    directory = metrics.prepare_multiprocess_dir(tmp_path / "metrics")
    # One worker has ended (without saying so), one is still serving with a hold open.
    ended = _worker(directory, 3, 1_000, 2, 0)
    assert ended.wait(30) == 0
    serving = _worker(directory, 2, 250, 1, 1)
    try:
        samples = parse(_client(Settings(metrics_enabled=True)).get("/metrics").text)
    finally:
        assert serving.stdin is not None
        serving.stdin.close()
        serving.wait(30)
    ok = {"model": "chat", "provider": "fake", "status": "ok"}
    assert value(samples, "creditdash_requests_total", **ok) == 5
    charged = value(
        samples, "creditdash_credits_charged_micros_total", model="chat", provider="fake"
    )
    assert charged == 3 * 1_000 + 2 * 250
    latency = {"model": "chat", "stream": "false"}
    assert value(samples, "creditdash_request_latency_seconds_count", **latency) == 5
    assert value(samples, "creditdash_request_latency_seconds_bucket", le="0.25", **latency) == 5
    assert value(samples, "creditdash_checkout_webhooks_total", provider="stripe",
                 outcome="credited") == 2  # fmt: skip
    # The ended worker's counters stay in the totals; its open holds went with it.
    assert value(samples, "creditdash_open_holds") == 1


def test_a_new_run_starts_from_an_empty_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"left by the last run")
    (directory / "notes.txt").write_text("the operator's")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "elsewhere")  # undone after the test
    assert metrics.prepare_multiprocess_dir(directory) == directory
    assert os.environ[metrics.MULTIPROC_ENV] == str(directory)
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]


def test_attempts_read_as_bounded_results() -> None:
    cases = {
        ("ok", 200): "ok", ("timeout", None): "timeout", ("connect_error", None): "connect",
        ("http_error", 429): "429", ("http_error", 503): "5xx", ("http_error", 401): "route",
        ("http_error", 302): "route", ("http_error", 400): "4xx", ("http_error", 200): "error_body",
        ("refused", None): "refused", ("unsupported", None): "unsupported",
    }  # fmt: skip
    assert {case: metrics.attempt_result(*case) for case in cases} == cases


def test_the_grafana_dashboard_uses_only_metrics_that_exist() -> None:
    import re

    dashboard = json.loads((REPO / "docs" / "grafana" / "creditdash.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"creditdash_[a-z_]+", target["expr"])
    }
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    defined = {
        metric._name + suffix  # type: ignore[attr-defined]
        for metric in vars(metrics).values()
        if hasattr(metric, "_type") and hasattr(metric, "_name")
        for suffix in suffixes[metric._type]  # type: ignore[attr-defined]
    }
    defined |= {"creditdash_held_micros", "creditdash_outbox_backlog", "creditdash_database_up"}
    assert used and used <= defined, used - defined
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("request rate", "error rate", "latency", "first byte", "upstream failures",
                  "credits charged", "open holds", "webhooks", "outbox"):  # fmt: skip
        assert topic in titles


@pytest.mark.postgres
def test_creditdash_gateway_workers_report_together(
    pg_engine: Engine, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    """The real command with two uvicorn workers: a stale file of an earlier run is removed,
    every scrape (whichever worker answers it) counts every request, and the workers' live
    gauges are dropped when they stop."""
    with db.session_scope(engine=pg_engine) as session:
        import_catalog(session, parse_catalog(catalog_yaml(fake_upstream.port)))
    who = funded_customer(pg_engine, credits_micros=10_000_000, name="Metered")
    with db.session_scope(engine=pg_engine) as session:
        _key, raw_key = create_api_key(session, customer_id=who.customer_id, name="metrics")
    port = free_port()
    directory = Path(os.environ["CREDITDASH_DATA_DIR"]) / "metrics" / f"gateway-{port}"
    directory.mkdir(parents=True)
    (directory / "counter_999999.db").write_bytes(b"an earlier run's")
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    env |= {"CREDITDASH_METRICS_ENABLED": "true", "CREDITDASH_METRICS_TOKEN": TOKEN,
            "PYTHONPATH": str(REPO)}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "creditdash.cli", "gateway", "--port", str(port), "--workers", "2"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "gateway.log").open("wb"),
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    body = {"model": "chat", "max_tokens": 20, "messages": MESSAGES}
    sent = 0

    def one(_n: int) -> int:
        with httpx.Client(headers={"authorization": f"Bearer {raw_key}"}, timeout=30) as client:
            return client.post(f"{base_url}/v1/chat/completions", json=body).status_code

    def writers() -> set[str]:
        return {p.stem.rsplit("_", 1)[-1] for p in directory.glob("counter_*.db")}

    try:
        wait_for_port(port, timeout_s=60)
        assert not (directory / "counter_999999.db").exists()
        # Until both workers have answered some (the kernel decides who accepts).
        with ThreadPoolExecutor(8) as pool:
            for _batch in range(20):
                assert set(pool.map(one, range(16))) == {200}
                sent += 16
                if len(writers()) >= 2:
                    break
        assert len(writers()) == 2, writers()
        for _scrape in range(6):  # answered by either worker: the same sums
            samples = scrape(base_url)
            ok = {"model": "chat", "provider": "fake", "status": "ok"}
            assert value(samples, "creditdash_requests_total", **ok) == sent
            assert value(
                samples, "creditdash_credits_charged_micros_total", model="chat", provider="fake"
            ) == sent * cost_micros(PRICE, FAKE_USAGE)
            assert value(samples, "creditdash_open_holds") == 0
        assert list(directory.glob("gauge_livesum_*.db"))
    finally:
        stop_process_group(process)
    log = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in log, log
    assert not list(directory.glob("gauge_livesum_*.db"))  # each worker marked itself dead


def test_nothing_is_recorded_while_metrics_are_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from creditdash.core import settings

    labels = ("off-model", "off-provider", "ok")

    def counted() -> float:
        return metrics._child(metrics.REQUESTS, labels)._value.get()  # type: ignore[no-any-return]

    before = counted()
    for enabled, moved in (("false", 0), ("true", 1)):
        monkeypatch.setenv("CREDITDASH_METRICS_ENABLED", enabled)
        settings.reset_settings()
        metrics.request_settled(
            model="off-model", provider="off-provider", status="ok", stream=False,
            latency_s=0.1, ttfb_s=None, charged_micros=0, attempts=[],
        )  # fmt: skip
        assert counted() - before == moved
    settings.reset_settings()


def test_no_test_left_a_multiprocess_directory_behind() -> None:
    # Runs last in this module: the ones above set PROMETHEUS_MULTIPROC_DIR only for themselves.
    assert metrics.multiprocess_dir() is None
