"""The gateway process's one Starlette app: the metered /v1 routes (proxy/) with the browser
routes beside them (web/: payment webhooks, the sandbox checkout page, document downloads,
the metrics scrape).

`creditdash gateway` serves create_app() with uvicorn; the Reflex app mounts a fresh one under
its backend (creditdash.py), so both ports answer the same paths.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from creditdash import jobs
from creditdash.core import metrics
from creditdash.core.settings import Settings
from creditdash.proxy.app import build_app, check_startup
from creditdash.proxy.gateway import Gateway
from creditdash.web.documents import document_routes
from creditdash.web.metrics import metrics_routes
from creditdash.web.payments import payment_routes


def create_app(*, standalone: bool = True, settings: Settings | None = None) -> Starlette:
    """A fresh gateway app. standalone=True runs its own lifespan (the start-up check, the
    clock's jobs, closing the upstream clients); mounted in Reflex, the Reflex app's lifespan
    tasks do that instead."""
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(check_startup, settings)
        clock = asyncio.create_task(jobs.run_forever())
        try:
            yield
        finally:
            clock.cancel()
            await gateway.aclose()
            metrics.process_exited()  # a worker of several: its live gauges end with it

    return build_app(
        gateway,
        extra_routes=payment_routes(settings) + document_routes() + metrics_routes(settings),
        lifespan=lifespan if standalone else None,
    )
