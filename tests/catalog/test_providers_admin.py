"""Provider edits from the admin UI: the SSRF guard, the write-only key, a connection test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from creditdash.catalog import providers
from creditdash.core import db, settings
from creditdash.core.audit import Actor, AuditEntry
from creditdash.core.errors import ValidationFailed
from tests.conftest import free_port
from tests.proxy.fake_upstream import ServerThread

KEY = "sk-upstream-ADMIN-TEST-0123456789"
ADMIN = Actor(label="admin-test")
HEADER_KEY = "hdr-ADMIN-TEST-api-key-42"


@pytest.fixture(scope="module")
def models_server() -> Iterator[str]:
    async def models(request: Request) -> JSONResponse:
        by_header = request.headers.get("api-key") == HEADER_KEY
        if request.headers.get("authorization") != f"Bearer {KEY}" and not by_header:
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        return JSONResponse({"object": "list", "data": [{"id": "m1"}, {"id": "m2"}]})

    server = ServerThread(Starlette(routes=[Route("/v1/models", models)]), free_port())
    server.start()
    yield f"http://127.0.0.1:{server.port}/v1"
    server.stop()


def test_private_base_urls_are_refused_unless_allowed(sqlite_engine: Engine) -> None:
    with db.session_scope() as session, pytest.raises(ValidationFailed):
        providers.save_provider(
            session,
            name="local",
            base_url="http://127.0.0.1:9/v1",
            api_key="k",
            timeout_s=30,
            enabled=True,
            actor=ADMIN,
        )
    with db.session_scope() as session, pytest.raises(ValidationFailed):
        providers.save_provider(
            session,
            name="meta",
            base_url="http://169.254.169.254/latest",
            api_key="k",
            timeout_s=30,
            enabled=True,
            actor=ADMIN,
        )
    with db.session_scope(readonly=True) as session:
        assert providers.list_providers(session) == []


def test_key_is_write_only_and_connection_is_tested(
    sqlite_engine: Engine, models_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    settings.reset_settings()
    with db.session_scope() as session:
        view = providers.save_provider(
            session,
            name="up",
            base_url=models_server,
            api_key=KEY,
            timeout_s=30,
            enabled=True,
            actor=ADMIN,
        )
    assert view.key_hint == "…6789"
    with db.session_scope() as session:
        # Saving again without a key keeps the stored one.
        providers.save_provider(
            session,
            name="up",
            base_url=models_server,
            api_key="",
            timeout_s=60,
            enabled=True,
            actor=ADMIN,
        )
        result = providers.check_connection(session, name="up")
    assert result.ok and "2 models" in result.message
    with db.session_scope(readonly=True) as session:
        audit = " ".join(
            (e.before_json or "") + (e.after_json or "")
            for e in session.execute(select(AuditEntry)).scalars()
        )
    assert KEY not in audit and "6789" in audit
    with db.session_scope() as session:
        providers.save_provider(
            session,
            name="up",
            base_url=models_server,
            api_key="sk-wrong-key-00000000",
            timeout_s=60,
            enabled=True,
            actor=ADMIN,
        )
        failed = providers.check_connection(session, name="up")
    assert not failed.ok and failed.message == "the upstream answered HTTP 401"


def test_connection_test_sends_the_extra_headers(
    sqlite_engine: Engine, models_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider that authenticates by header (api-key) passes the test with its header."""
    from creditdash.catalog.importer import import_catalog, parse_catalog

    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    settings.reset_settings()
    catalog = (
        f"providers:\n  - name: byheader\n    base_url: {models_server}\n"
        f"    headers: {{api-key: {HEADER_KEY}}}\n"
    )
    with db.session_scope() as session:
        import_catalog(session, parse_catalog(catalog))
    with db.session_scope(readonly=True) as session:
        result = providers.check_connection(session, name="byheader")
        (view,) = providers.list_providers(session)
    assert result.ok and "2 models" in result.message
    assert view.headers_hint == "api-key: ••••" and HEADER_KEY not in repr(view)
