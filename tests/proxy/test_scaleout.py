"""Several gateway processes on one PostgreSQL ledger, spending one customer's balance at once.

Two real `creditdash gateway` processes (one of them with two uvicorn workers, so three
processes in all) share the test run's PostgreSQL and the fake upstream. Many clients, released
together, send streamed and plain completions to both until the balance runs out. Whatever the
interleaving, the database's conditional statements must keep the books exact: nothing is
overspent, nothing is charged twice or not at all, every answered request has one usage record
and one upstream call, no hold is left open, and `creditdash ledger verify` is clean.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from creditdash.accounts.api_keys import create_api_key
from creditdash.billing import ledger
from creditdash.billing.models import UsageRecord
from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.core import db, settings
from tests.conftest import _configure, free_port, stop_process_group, wait_for_port
from tests.factories import funded_customer
from tests.proxy.conftest import catalog_yaml
from tests.proxy.fake_upstream import FakeUpstream

pytestmark = pytest.mark.postgres

# The fake upstream reports 11 prompt and 7 completion tokens; the catalog's price is 1.00 and
# 2.00 credits per million tokens, so every answered request costs 11 + 14 micros.
PRICE_MICROS = 25
CLIENTS = 24
REQUESTS = 240


@pytest.fixture
def pg_engine(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Engine]:
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    engine = _configure(postgres_url, monkeypatch, tmp_path)
    yield engine
    db.set_engine(None)
    engine.dispose()
    settings.reset_settings()


def _start_gateway(
    env: dict[str, str], workers: int, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "creditdash.cli", "gateway", "--port", str(port),
         "--workers", str(workers)],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )  # fmt: skip
    return process, f"http://127.0.0.1:{port}"


def _complete(client: httpx.Client, stream: bool) -> int:
    body = {"model": "chat", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    if not stream:
        return client.post("/v1/chat/completions", json=body).status_code
    body |= {"stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=body) as answer:
        text = "".join(answer.iter_text())
        if answer.status_code == 200:
            # A streamed answer that was cut short would be a 200 with no end marker.
            assert text.rstrip().endswith("data: [DONE]"), text[-200:]
        return answer.status_code


def test_two_gateway_processes_never_overspend_one_balance(
    pg_engine: Engine, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "CREDITDASH_DATABASE_URL": os.environ["CREDITDASH_DATABASE_URL"],
        "CREDITDASH_DATA_DIR": os.environ["CREDITDASH_DATA_DIR"],
    }
    with db.session_scope(engine=pg_engine) as session:
        import_catalog(session, parse_catalog(catalog_yaml(fake_upstream.port)))
    # Enough for a few dozen requests, far fewer than are sent: the balance runs out while
    # requests are in flight on every process.
    opening = 60 * PRICE_MICROS
    who = funded_customer(pg_engine, credits_micros=opening, name="Shared")
    with db.session_scope(engine=pg_engine) as session:
        _key, raw_key = create_api_key(session, customer_id=who.customer_id, name="scale-out")

    gateways = [
        _start_gateway(env, workers=2, log=tmp_path / "gateway-a.log"),
        _start_gateway(env, workers=1, log=tmp_path / "gateway-b.log"),
    ]
    try:
        for _process, url in gateways:
            wait_for_port(int(url.rsplit(":", 1)[1]), timeout_s=60)
        upstream_before = fake_upstream.count("echo")
        clients = [
            httpx.Client(
                base_url=gateways[n % len(gateways)][1],
                headers={"Authorization": f"Bearer {raw_key}"},
                timeout=30,
            )
            for n in range(CLIENTS)
        ]
        start = threading.Barrier(CLIENTS)

        def client_run(n: int) -> list[int]:
            start.wait()
            return [
                _complete(clients[n], stream=(i + n) % 2 == 0) for i in range(REQUESTS // CLIENTS)
            ]

        with ThreadPoolExecutor(CLIENTS) as pool:
            statuses = Counter(s for batch in pool.map(client_run, range(CLIENTS)) for s in batch)
        for client in clients:
            client.close()
    finally:
        for process, _url in gateways:
            stop_process_group(process)
    logs = "\n".join((tmp_path / f"gateway-{n}.log").read_text() for n in "ab")

    answered, refused = statuses[200], statuses[402]
    assert answered + refused == REQUESTS, (statuses, logs)
    assert answered > 0 and refused > 0, statuses  # the balance really ran out mid-run
    assert answered <= opening // PRICE_MICROS

    with db.session_scope(engine=pg_engine) as session:
        balance = ledger.get_balance(session, who.account_id)
        records, charged = session.execute(
            select(func.count(), func.coalesce(func.sum(UsageRecord.price_micros), 0)).where(
                col(UsageRecord.customer_id) == who.customer_id, col(UsageRecord.http_status) == 200
            )
        ).one()
        problems = ledger.verify(session)
        open_holds = ledger.open_hold_count(session)
    # Not overspent; every answered request charged exactly once, at its price.
    assert balance.held_micros == 0 and open_holds == 0
    assert balance.posted_micros >= 0
    assert records == answered
    assert charged == answered * PRICE_MICROS
    assert balance.posted_micros == opening - charged
    # Refused requests never reached the upstream; answered ones did once each.
    assert fake_upstream.count("echo") - upstream_before == answered
    assert problems == []
    verify = subprocess.run(
        [sys.executable, "-m", "creditdash.cli", "ledger", "verify"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "Traceback" not in logs, logs
