"""The Prometheus metrics every layer records into, defined once (docs/deploy.md, "Metrics").

They live in the kernel so that the gateway (proxy/), the webhooks (web/) and anything else
can record without importing one another; the scrape endpoint is web/metrics.py.

Recording is a labelled counter increment or a histogram observation: no database work and no
I/O beyond the library's own (in multiprocess mode a write into a memory-mapped file). Labels
are bounded: models and providers come from the catalog, statuses and kinds from the code.
Never label by key, customer or anything a client sends.

Several gateway worker processes report together through the library's multiprocess mode:
with PROMETHEUS_MULTIPROC_DIR set before the process starts (`creditdash gateway --workers N`
does it, see prepare_multiprocess_dir), every process writes its own files there and one scrape
of any of them sums them all.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from creditdash.core.settings import get_settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds. Latency covers a whole answer (a stream until its end), so the upper buckets are long.
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
TTFB_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter(
    "creditdash_requests",
    "Metered gateway requests by public model, answering provider and how they ended.",
    ["model", "provider", "status"],
)
LATENCY = Histogram(
    "creditdash_request_latency_seconds",
    "From the request's arrival to its settlement (a stream: to its end).",
    ["model", "stream"],
    buckets=LATENCY_BUCKETS_S,
)
TTFB = Histogram(
    "creditdash_time_to_first_byte_seconds",
    "From the request's arrival to the first byte of the upstream's answer.",
    ["model", "stream"],
    buckets=TTFB_BUCKETS_S,
)
UPSTREAM_ATTEMPTS = Counter(
    "creditdash_upstream_attempts",
    "Upstream attempts by provider and result (ok, 4xx passed on, or a failure kind).",
    ["provider", "result"],
)
UPSTREAM_FAILURES = Counter(
    "creditdash_upstream_failures",
    "Failed upstream attempts by provider and kind (timeout, connect, 429, 5xx, ...).",
    ["provider", "kind"],
)
CREDITS_CHARGED = Counter(
    "creditdash_credits_charged_micros",
    "Credits charged for metered requests, in micros (1 credit = 1,000,000).",
    ["model", "provider"],
)
OPEN_HOLDS = Gauge(
    "creditdash_open_holds",
    "Holds placed by live gateway processes and not yet settled or voided.",
    multiprocess_mode="livesum",
)
WEBHOOKS = Counter(
    "creditdash_checkout_webhooks",
    "Payment webhook deliveries by provider and outcome (credited, duplicate, ...).",
    ["provider", "outcome"],
)

# How an attempt's (outcome, status) reads as a result label (proxy/call.py Attempt).
_NOT_FAILURES = frozenset({"ok", "4xx"})


def recording() -> bool:
    """Whether this process records at all: only with CREDITDASH_METRICS_ENABLED, so a gateway
    that is never scraped spends nothing on it (the settings are read once and cached)."""
    return get_settings().metrics_enabled


# Each metric's children by label values: labels() validates and locks on every call, which
# is most of the cost of a sample (about 2 us of 3 measured); a dict lookup is not. Labels are
# bounded (see above), so these stay small. A race only makes labels() run twice, which returns
# the same child.
_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def _child(metric: Any, values: tuple[str, ...]) -> Any:
    key = (id(metric), values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def attempt_result(outcome: str, status: int | None) -> str:
    """One attempt as a bounded label: ok, 4xx (the request's fault, passed on), or a failure
    kind: timeout, connect, 429, 5xx, route (our key or model name, a redirect), error_body
    (a 2xx that was only an error), refused (the URL check), unsupported."""
    if outcome == "ok":
        return "ok"
    if outcome == "connect_error":
        return "connect"
    if outcome != "http_error":
        return outcome  # timeout, refused, unsupported
    if status is None or status < 300:
        return "error_body"
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    if status in (401, 403, 404) or status < 400:
        return "route"
    return "4xx"


def request_settled(
    *,
    model: str,
    provider: str,
    status: str,
    stream: bool,
    latency_s: float,
    ttfb_s: float | None,
    charged_micros: int,
    attempts: Iterable[tuple[str, str, int | None]],
) -> None:
    """One request's ending (attempts: provider, outcome, status of each try)."""
    if not recording():
        return
    _child(REQUESTS, (model, provider, status)).inc()
    streamed = "true" if stream else "false"
    _child(LATENCY, (model, streamed)).observe(latency_s)
    if ttfb_s is not None:
        _child(TTFB, (model, streamed)).observe(ttfb_s)
    if charged_micros:
        _child(CREDITS_CHARGED, (model, provider)).inc(charged_micros)
    for attempt_provider, outcome, http_status in attempts:
        result = attempt_result(outcome, http_status)
        _child(UPSTREAM_ATTEMPTS, (attempt_provider, result)).inc()
        if result not in _NOT_FAILURES:
            _child(UPSTREAM_FAILURES, (attempt_provider, result)).inc()


def request_refused(*, model: str, status: str) -> None:
    """A request refused before anything went upstream (402 credits, a budget)."""
    if not recording():
        return
    _child(REQUESTS, (model, "", status)).inc()


def hold_opened() -> None:
    if recording():
        OPEN_HOLDS.inc()


def hold_closed() -> None:
    if recording():
        OPEN_HOLDS.dec()


def webhook_received(provider: str, outcome: str) -> None:
    if recording():
        _child(WEBHOOKS, (provider, outcome)).inc()


# ------------------------------------------------------------------------- multiprocess


def multiprocess_dir() -> str | None:
    """The directory several processes report through, when this process uses one."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(path: Path) -> Path:
    """Make a directory without metric files for one run of several worker processes and point
    PROMETHEUS_MULTIPROC_DIR at it (the workers inherit the environment). Files a previous run
    left would otherwise be summed into this run's counters, so they are removed first."""
    path.mkdir(parents=True, exist_ok=True)
    # Only the library's own files: the directory may be one an operator chose.
    for entry in path.glob("*.db"):
        if entry.is_file():
            entry.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def process_exited(pid: int | None = None) -> None:
    """Drop a finished worker's live gauges (its counters stay summed into the totals)."""
    if multiprocess_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid() if pid is None else pid)


def forget_dead_processes(directory: str) -> list[int]:
    """Drop the live gauges of workers that ended without saying so (a crash, a kill): a live
    gauge's file names its process, which is looked up on this host. The pids dropped."""
    from prometheus_client import multiprocess

    dropped = []
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid_text = path.stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            multiprocess.mark_process_dead(int(pid_text), directory)
            dropped.append(int(pid_text))
    return dropped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
