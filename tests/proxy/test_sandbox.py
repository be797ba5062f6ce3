"""The built-in sandbox upstream behind the gateway: the demo works with no provider keys."""

from __future__ import annotations

import base64
import json
import struct
from decimal import Decimal

import openai
import pytest
from sqlalchemy.engine import Engine
from starlette.applications import Starlette

from creditdash.accounts.api_keys import create_api_key
from creditdash.billing import ledger
from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.core import db
from creditdash.demo import DEMO_CATALOG
from creditdash.proxy.sandbox import count_tokens
from tests.factories import funded_customer


@pytest.fixture
def sandbox_client(sqlite_engine: Engine, gateway_server: tuple[Starlette, str]) -> openai.OpenAI:
    with db.session_scope(engine=sqlite_engine) as session:
        import_catalog(session, parse_catalog(DEMO_CATALOG))
    app, base_url = gateway_server
    app.state.gateway.catalog.invalidate()
    who = funded_customer(sqlite_engine, credits_micros=5_000_000)
    with db.session_scope(engine=sqlite_engine) as session:
        _key, raw = create_api_key(session, customer_id=who.customer_id, name="sandbox")
    return openai.OpenAI(api_key=raw, base_url=base_url + "/v1", max_retries=0)


def test_sandbox_answers_deterministically_with_real_counts(
    sandbox_client: openai.OpenAI, sqlite_engine: Engine
) -> None:
    ask = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello, sandbox!"}]}
    first = sandbox_client.chat.completions.create(max_tokens=12, **ask)  # type: ignore[call-overload]
    second = sandbox_client.chat.completions.create(max_tokens=12, **ask)  # type: ignore[call-overload]
    text = first.choices[0].message.content or ""
    assert text and text == second.choices[0].message.content
    assert first.usage is not None
    assert first.usage.completion_tokens == count_tokens(text) == 12
    assert first.usage.prompt_tokens == count_tokens("Hello, sandbox!") + 3
    assert Decimal(str(first.usage.model_extra["cost"])) > 0  # type: ignore[index]

    streamed = sandbox_client.chat.completions.create(
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=12,
        **ask,  # type: ignore[call-overload]
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12

    vectors = sandbox_client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 16
    # The SDK asks for base64 unless told otherwise; the same vectors come back either way.
    floats = sandbox_client.embeddings.create(
        model="text-embedding-3-small", input=["a b", "c"], encoding_format="float"
    )
    for plain, decoded in zip(floats.data, vectors.data, strict=True):
        assert plain.embedding == pytest.approx(decoded.embedding, abs=1e-6)
    raw = sandbox_client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="a b", encoding_format="base64"
    )
    encoded = json.loads(raw.text)["data"][0]["embedding"]
    decoded = struct.unpack("<16f", base64.b64decode(encoded))
    assert list(decoded) == pytest.approx(floats.data[0].embedding, abs=1e-6)
    with db.session_scope(engine=sqlite_engine, readonly=True) as session:
        assert ledger.verify(session) == []
