"""`creditdash webhooks`: a workspace's outbound webhook endpoints and their delivery log."""

from __future__ import annotations

from typing import Any

import click
from sqlmodel import Session

from creditdash.cli.common import emit, in_transaction
from creditdash.notify import delivery, endpoints
from creditdash.notify.models import WebhookEndpoint


@click.group("webhooks")
def group() -> None:
    """Outbound webhook endpoints (signed with the Standard Webhooks scheme)."""


def _shown(endpoint: WebhookEndpoint) -> dict[str, Any]:
    # Never the secret: it is printed once, by `add`.
    return {
        "endpoint_id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoints.event_types(endpoint),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "consecutive_failures": endpoint.consecutive_failures,
    }


@group.command("add")
@click.option("--customer", "customer_id", required=True)
@click.option("--url", required=True)
@click.option("--events", required=True, help="Comma-separated event types")
@click.option("--description", default="")
@click.option("--json", "as_json", is_flag=True)
def webhooks_add(customer_id: str, url: str, events: str, description: str, as_json: bool) -> None:
    """Add an endpoint; its signing secret is printed once and cannot be shown again."""

    def work(session: Session) -> tuple[dict[str, Any], str]:
        endpoint, secret = endpoints.add_endpoint(
            session,
            customer_id=customer_id,
            url=url,
            event_types=events.split(","),
            description=description,
        )
        return _shown(endpoint), secret

    shown, secret = in_transaction(work)
    emit(
        {**shown, "secret": secret},
        as_json,
        f"endpoint_id: {shown['endpoint_id']}\nsecret: {secret}",
    )


@group.command("list")
@click.option("--customer", "customer_id", required=True)
@click.option("--json", "as_json", is_flag=True)
def webhooks_list(customer_id: str, as_json: bool) -> None:
    """The workspace's endpoints."""
    shown = in_transaction(
        lambda s: [_shown(e) for e in endpoints.list_endpoints(s, customer_id=customer_id)],
        readonly=True,
    )
    lines = [
        f"{e['endpoint_id']}  {'enabled ' if e['enabled'] else 'disabled'}  {e['url']}  "
        f"{','.join(e['event_types'])}  failures={e['consecutive_failures']}"
        for e in shown
    ]
    emit({"endpoints": shown}, as_json, "\n".join(lines) or "no endpoints")


@group.command("deliveries")
@click.option("--customer", "customer_id", required=True)
@click.option("--endpoint", "endpoint_id", default=None)
@click.option("--status", type=click.Choice(["pending", "delivered", "failed"]), default=None)
@click.option("--json", "as_json", is_flag=True)
def webhooks_deliveries(
    customer_id: str, endpoint_id: str | None, status: str | None, as_json: bool
) -> None:
    """The delivery log, newest first."""

    def work(session: Session) -> list[dict[str, Any]]:
        views = delivery.list_deliveries(
            session, customer_id=customer_id, endpoint_id=endpoint_id, status=status
        )
        return [
            {
                "delivery_id": v.id,
                "endpoint_id": v.endpoint_id,
                "event_id": v.event_id,
                "type": v.event_type,
                "status": v.status,
                "attempts": v.attempts,
                "last_status_code": v.last_status_code,
                "last_error": v.last_error,
                "last_attempt_at": v.last_attempt_at.isoformat() if v.last_attempt_at else None,
            }
            for v in views
        ]

    shown = in_transaction(work, readonly=True)
    lines = [
        f"{d['delivery_id']}  {d['status']:9}  {d['type']:18}  attempts={d['attempts']}  "
        f"last={d['last_status_code'] or '-'}"
        for d in shown
    ]
    emit({"deliveries": shown}, as_json, "\n".join(lines) or "no deliveries")


@group.command("resend")
@click.argument("delivery_id")
def webhooks_resend(delivery_id: str) -> None:
    """Send a delivery again soon, with the same webhook-id."""
    in_transaction(lambda s: delivery.resend(s, delivery_id=delivery_id, customer_id=None))
    click.echo(f"resend queued: {delivery_id}")


def _set_enabled(endpoint_id: str, enabled: bool) -> None:
    in_transaction(
        lambda s: endpoints.update_endpoint(
            s, endpoint_id=endpoint_id, customer_id=None, enabled=enabled
        )
    )
    click.echo(f"{'enabled' if enabled else 'disabled'}: {endpoint_id}")


@group.command("disable")
@click.argument("endpoint_id")
def webhooks_disable(endpoint_id: str) -> None:
    """Stop sending to an endpoint (its pending deliveries wait)."""
    _set_enabled(endpoint_id, False)


@group.command("enable")
@click.argument("endpoint_id")
def webhooks_enable(endpoint_id: str) -> None:
    """Send to an endpoint again (its failure count starts over)."""
    _set_enabled(endpoint_id, True)
