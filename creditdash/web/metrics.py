"""GET /metrics: the Prometheus scrape endpoint (docs/deploy.md, "Metrics").

Off unless CREDITDASH_METRICS_ENABLED (404 then, as for any unknown path); with
CREDITDASH_METRICS_TOKEN set, a scrape must send `Authorization: Bearer <token>` (401
otherwise). The samples the processes recorded (core/metrics.py) are summed across every worker
process when PROMETHEUS_MULTIPROC_DIR is set, and read from this process otherwise. A few
gauges are read from the database at scrape time instead, each one aggregate over a small or
indexed set of rows: the credit held by open holds, and the outbox's backlog.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, func, select
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from creditdash.billing.models import LedgerAccount
from creditdash.core import db, metrics
from creditdash.core.outbox import Event, OutboxMail
from creditdash.core.settings import Settings, get_settings
from creditdash.notify.models import WebhookDelivery

log = logging.getLogger(__name__)
METRICS_PATH = "/metrics"


def outbox_backlog(session: Session) -> dict[str, int]:
    """What the jobs loop has still to do, by queue (each count walks an index)."""
    return {
        "events_to_mail": _count(
            session, select(func.count()).where(col(Event.mailed_at).is_(None))
        ),
        "events_to_hook": _count(
            session, select(func.count()).where(col(Event.hooked_at).is_(None))
        ),
        "mail": _count(session, select(func.count()).where(col(OutboxMail.status) == "pending")),
        "webhook_deliveries": _count(
            session, select(func.count()).where(col(WebhookDelivery.status) == "pending")
        ),
    }


def held_micros(session: Session) -> int:
    """Credit held by open holds, from the accounts' cached pending debits (one row per
    account, where counting the holds themselves would scan every hold ever placed)."""
    total = session.exec(select(func.coalesce(func.sum(LedgerAccount.debits_pending), 0))).one()
    return int(total)


def _count(session: Session, statement: object) -> int:
    return int(session.exec(statement).one())  # type: ignore[call-overload]


class DatabaseCollector(Collector):
    """The gauges read at scrape time; creditdash_database_up says whether they could be."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "creditdash_database_up", "Whether the scrape could read the database (1) or not."
        )
        try:
            with db.session_scope(readonly=True) as session:
                held = held_micros(session)
                backlog = outbox_backlog(session)
        except SQLAlchemyError as exc:  # one line per scrape, not a traceback every 15 s
            log.warning("metrics: the database did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "creditdash_held_micros", "Credit held by open holds, in micros.", value=held
        )
        queues = GaugeMetricFamily(
            "creditdash_outbox_backlog",
            "Outbox work not done yet: events to mail or to hand to webhooks, emails and "
            "webhook deliveries pending.",
            labels=["queue"],
        )
        for queue, count in backlog.items():
            queues.add_metric([queue], count)
        yield queues


def exposition() -> bytes:
    """Every metric in Prometheus' text format (blocking: it reads files and the database)."""
    directory = metrics.multiprocess_dir()
    if directory is not None:
        metrics.forget_dead_processes(directory)
        recorded = CollectorRegistry()
        MultiProcessCollector(recorded, path=directory)
    else:
        recorded = REGISTRY
    from_database = CollectorRegistry()
    from_database.register(DatabaseCollector())
    return generate_latest(recorded) + generate_latest(from_database)


def authorized(header: str | None, token: str) -> bool:
    """No token configured: anyone who reaches the path. Otherwise the exact Bearer token,
    compared in constant time."""
    if not token:
        return True
    expected = f"Bearer {token}".encode()
    return hmac.compare_digest((header or "").encode(), expected)


def metrics_routes(settings: Settings | None = None) -> list[Route]:
    def current() -> Settings:
        return settings or get_settings()

    async def scrape(request: Request) -> Response:
        configured = current()
        if not configured.metrics_enabled:
            return PlainTextResponse("Not Found", status_code=404)
        if not authorized(request.headers.get("authorization"), configured.metrics_token):
            return PlainTextResponse(
                "a Bearer token is required", status_code=401,
                headers={"www-authenticate": 'Bearer realm="metrics"'},
            )  # fmt: skip
        body = await asyncio.to_thread(exposition)
        # The classic text format: every name here is a plain one, and every Prometheus reads it.
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return [Route(METRICS_PATH, scrape, methods=["GET"])]
