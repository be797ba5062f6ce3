"""`creditdash prices`: route costs checked against the price data bundled with genai-prices."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from sqlmodel import Session

from creditdash.catalog import price_sync
from creditdash.catalog.cost_schedules import describe_cost
from creditdash.catalog.prices import Price
from creditdash.cli.common import emit, in_transaction, raise_refusal_exit
from creditdash.core.audit import CLI
from creditdash.core.money import format_credits


@click.group("prices")
def group() -> None:
    """Sync route costs with the bundled price data; review what the sync found."""


def _parse_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise_refusal_exit(f"--effective {text!r} is not an ISO 8601 date and time")
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@group.command("sync")
@click.option("--dry-run", is_flag=True, help="Show the differences; change nothing")
@click.option(
    "--effective",
    "effective",
    default=None,
    help="When new costs apply (ISO 8601, UTC if no offset; default now)",
)
@click.option("--json", "as_json", is_flag=True)
def prices_sync(dry_run: bool, effective: str | None, as_json: bool) -> None:
    """Compare every route's cost with the bundled data and schedule the differences."""
    at = _parse_at(effective)
    result = in_transaction(
        lambda s: price_sync.sync_prices(s, actor=CLI, effective_at=at, dry_run=dry_run)
    )
    if as_json:
        click.echo(json.dumps(result.as_json()))
        return
    click.echo(
        f"{result.data_version}; effective {result.effective_at.isoformat()}; gate {result.gate}"
        + ("; dry run, nothing changed" if dry_run else "")
    )
    for line in result.lines:
        click.echo("  " + price_sync.describe_line(line))


def _review_json(view: price_sync.ReviewView) -> dict[str, object]:
    def cost(c: Price | None) -> dict[str, str] | None:
        return None if c is None else describe_cost(c)

    return {
        "id": view.id,
        "route": view.route,
        "kind": view.kind,
        "matched_model": view.matched_model,
        "data_version": view.data_version,
        "before": cost(view.before),
        "after": cost(view.after),
        "effective_at": view.effective_at.isoformat() if view.effective_at else None,
        "losing": view.losing,
        "loss_mix": view.loss_mix,
        "closed": view.closed,
        "status": view.status,
    }


@group.command("findings")
@click.option("--json", "as_json", is_flag=True)
def prices_findings(as_json: bool) -> None:
    """The sync's findings still waiting for an accept or a reject."""
    views = in_transaction(lambda s: price_sync.list_reviews(s), readonly=True)
    if as_json:
        click.echo(json.dumps([_review_json(v) for v in views]))
        return
    for v in views:
        change = ""
        if v.before is not None and v.after is not None:
            change = (f" input {format_credits(v.before.input_micros_per_mtok)} -> "
                      f"{format_credits(v.after.input_micros_per_mtok)}, output "
                      f"{format_credits(v.before.output_micros_per_mtok)} -> "
                      f"{format_credits(v.after.output_micros_per_mtok)}")  # fmt: skip
        flags = (" LOSING" if v.losing else "") + (" CLOSED" if v.closed else "")
        click.echo(f"{v.id}  {v.route}  {v.kind}{change}{flags}")
    if not views:
        click.echo("no findings waiting")


def _decide(review_id: int, accept: bool, as_json: bool) -> None:
    def work(session: Session) -> str:
        return price_sync.decide_review(session, review_id=review_id, accept=accept, actor=CLI)

    done = in_transaction(work)
    emit({"id": review_id, "status": "accepted" if accept else "rejected", "done": done},
         as_json, f"finding {review_id}: {done}")  # fmt: skip


@group.command("accept")
@click.argument("review_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def prices_accept(review_id: int, as_json: bool) -> None:
    """Accept a finding: its cost stands and a route the gate closed opens again."""
    _decide(review_id, True, as_json)


@group.command("reject")
@click.argument("review_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def prices_reject(review_id: int, as_json: bool) -> None:
    """Reject a finding: the cost before stands (an unknown model's route stays closed)."""
    _decide(review_id, False, as_json)
