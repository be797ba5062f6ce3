"""`creditdash gateway`: the gateway served on its own, without the dashboard."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from creditdash.cli.common import raise_refusal_exit
from creditdash.core.settings import get_settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
def gateway(host: str, port: int, workers: int) -> None:
    """Serve the gateway alone (stateless; run several behind a load balancer)."""
    # Imported here: uvicorn, and the gateway with Starlette and httpx behind proxy.app, add
    # about 0.2 s to every other command's start and are only needed to serve.
    import uvicorn

    from creditdash.proxy.app import check_startup

    try:
        check_startup()
    except (RuntimeError, ValueError) as exc:  # ValueError: pydantic refused a setting
        raise_refusal_exit(str(exc))
    from creditdash.core.settings import get_settings
    from creditdash.proxy.limits import per_process_warning

    warning = per_process_warning(get_settings(), workers)
    if warning is not None:  # once, before the workers start
        click.echo(warning, err=True)

    _metrics_across_workers(port, workers)

    # Metering runs in worker threads; a shorter GIL switch interval lets a finished database
    # call resume sooner while the event loop is busy (about 15% less latency measured).
    sys.setswitchinterval(0.0005)

    uvicorn.run(
        "creditdash.server:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # The C event loop and HTTP parser (both pinned dependencies); no access log line per
        # request (warnings and errors are still logged).
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        # Nothing in the gateway reads the client address or the forwarded scheme (keys, not
        # addresses, identify callers), so the per-request header rewrite is left out.
        proxy_headers=False,
    )


def _metrics_across_workers(port: int, workers: int) -> None:
    """With metrics on and several workers, one directory for this run that every worker
    records into, so a scrape answered by any of them sums them all (core/metrics.py). The
    operator's PROMETHEUS_MULTIPROC_DIR is used when set; either way it is emptied first."""
    from creditdash.core import metrics  # the metrics library only where it is needed

    settings = get_settings()
    if not settings.metrics_enabled or (workers == 1 and metrics.multiprocess_dir() is None):
        return
    chosen = metrics.multiprocess_dir()
    path = Path(chosen) if chosen else settings.data_dir / "metrics" / f"gateway-{port}"
    metrics.prepare_multiprocess_dir(path)
