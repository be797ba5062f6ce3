"""A request's metrics, read off its Call: the one place the gateway turns a request into
samples (core/metrics.py defines them). Recorded where every ending passes, the settlement
(settlement.py), so streams, voids and clients that left are each counted exactly once.

Recording never fails a request: these run beside money that has already moved.
"""

from __future__ import annotations

import logging
import time

from creditdash.core import metrics
from creditdash.proxy.call import Call

log = logging.getLogger(__name__)


def record_settled(call: Call, status: str, charged_micros: int) -> None:
    """A request that held credit ended (settled, voided, or failed to settle)."""
    try:
        route = call.route
        metrics.request_settled(
            model=call.model.name,
            provider=route.provider_name if route is not None else "",
            status=status,
            stream=call.stream,
            latency_s=time.perf_counter() - call.started,
            ttfb_s=call.ttfb_ms / 1000 if call.ttfb_ms is not None else None,
            charged_micros=charged_micros,
            attempts=[(a.provider, a.outcome, a.status) for a in call.attempts],
        )
        metrics.hold_closed()
    except Exception:
        log.warning("recording the metrics of %s failed", call.request_id, exc_info=True)


def record_held() -> None:
    """A request's hold was placed."""
    try:
        metrics.hold_opened()
    except Exception:
        log.warning("recording a hold failed", exc_info=True)


def record_refused(call: Call, status: str) -> None:
    """A request whose hold was refused (402 for credits, a hard budget, 429 for the key's
    spend cap): nothing went out."""
    try:
        metrics.request_refused(model=call.model.name, status=status)
    except Exception:
        log.warning("recording the metrics of %s failed", call.request_id, exc_info=True)


def record_limited(model: str, status: str) -> None:
    """A request the key's rate or concurrency limit refused (429), before any hold; model is
    the catalog's (it was found before the limits are checked)."""
    try:
        metrics.request_refused(model=model, status=status)
    except Exception:
        log.warning("recording a refusal failed", exc_info=True)
