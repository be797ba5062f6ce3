"""A gateway refuses to start with a configuration that would fail every request."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.core import db, settings
from creditdash.proxy import app as app_module
from creditdash.proxy.app import check_mounted_startup, check_startup
from creditdash.server import create_app
from tests.proxy.conftest import catalog_yaml


def test_production_without_a_secret_key_refuses_to_start(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITDASH_ENVIRONMENT", "production")
    monkeypatch.delenv("CREDITDASH_SECRET_KEY", raising=False)
    settings.reset_settings()
    with pytest.raises(RuntimeError, match="CREDITDASH_SECRET_KEY is required"):
        check_startup()


def test_a_key_that_cannot_open_the_stored_upstream_keys_refuses_to_start(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITDASH_ALLOW_PRIVATE_UPSTREAMS", "1")
    settings.reset_settings()
    with db.session_scope(engine=sqlite_engine) as session:
        import_catalog(session, parse_catalog(catalog_yaml(9)))
    check_startup()  # the key the catalog was stored with opens it

    monkeypatch.setenv("CREDITDASH_SECRET_KEY", "a-different-key-" + "x" * 40)
    settings.reset_settings()
    with pytest.raises(RuntimeError, match="refusing to start: cannot decrypt"):
        check_startup()


def test_an_unreachable_database_is_not_a_reason_to_refuse(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CREDITDASH_DATABASE_URL", f"sqlite:///{tmp_path}/missing/dir/x.db")
    settings.reset_settings()
    db.set_engine(None)
    check_startup()  # logged; the health check reports 503 until the database answers


@pytest.mark.anyio
async def test_the_dashboard_mounted_gateway_reports_a_bad_configuration_in_healthz(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITDASH_ENVIRONMENT", "production")
    monkeypatch.delenv("CREDITDASH_SECRET_KEY", raising=False)
    monkeypatch.setattr(app_module, "_startup_problem", [])
    settings.reset_settings()
    await check_mounted_startup()  # logged, not raised: the dashboard itself keeps running
    transport = httpx.ASGITransport(app=create_app(standalone=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "misconfigured"
    assert "CREDITDASH_SECRET_KEY" in response.json()["error"]
