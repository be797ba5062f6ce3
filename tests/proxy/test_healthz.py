"""GET /healthz answers for the gateway app, in-process."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.engine import Engine

from creditdash.core import db
from creditdash.server import create_app


@pytest.mark.anyio
async def test_healthz_ok(sqlite_engine: Engine) -> None:
    transport = httpx.ASGITransport(app=create_app(standalone=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.anyio
async def test_healthz_reports_an_unreachable_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db.set_engine(db.make_engine(f"sqlite:///{tmp_path}/missing-dir/nope.db"))
    try:
        transport = httpx.ASGITransport(app=create_app(standalone=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            response = await client.get("/healthz")
    finally:
        db.set_engine(None)
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
