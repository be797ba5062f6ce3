"""The gateway's ASGI app, built by a factory.

Mounted in the Reflex backend (one port with the dashboard) and runnable alone with
`creditdash gateway`. It never imports Reflex state or pages.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from creditdash import db


def add_gateway_routes(app: FastAPI) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        ok = await asyncio.to_thread(db.ping)
        if ok:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)


def create_app(*, standalone: bool = True) -> FastAPI:
    """A fresh gateway app. standalone=True runs its own background jobs (hold expiry)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from creditdash.billing.holds import expire_holds_forever

        expiry = asyncio.create_task(expire_holds_forever())
        try:
            yield
        finally:
            expiry.cancel()

    app = FastAPI(
        title="creditdash gateway",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan if standalone else None,
    )
    add_gateway_routes(app)
    return app
