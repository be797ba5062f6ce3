"""`creditdash payments`: reconcile paid checkout sessions with orders, and list disputes."""

from __future__ import annotations

import sys
from typing import Any

import click
from sqlmodel import Session

from creditdash.billing.payments import disputes, reconcile
from creditdash.cli.common import emit, in_transaction, refusals

# Exit statuses of `payments reconcile` (docs/contract.md section 15).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_FINDINGS = 3


@click.group("payments")
def group() -> None:
    """Payment reconciliation and disputes."""


def _text(report: dict[str, Any]) -> str:
    counts = report["counts"]
    lines = [
        f"run {report['run_id']}: {report['window']['since']} to {report['window']['until']} "
        f"({', '.join(report['providers'])})",
        f"sessions paid: {counts['sessions_seen']}, credited now: {counts['credited']}, "
        f"already credited: {counts['already_credited']}, mismatches: {counts['mismatches']}, "
        f"without an order: {counts['unmatched']}",
    ]
    for label in ("credited", "mismatches", "unmatched"):
        for item in report[label]:
            lines.append(
                f"  {label}: {item['provider']} {item['session_id']} "
                f"order={item.get('order_id', '-')} paid={item['paid']} "
                f"{item['paid_currency']}: {item['action']}"
            )
    if report["error"]:
        lines.append(f"error: {report['error']}")
    return "\n".join(lines)


@group.command("reconcile")
@click.option("--since", "since_text", default=None, help="Start (YYYY-MM-DD); default 3 days.")
@click.option("--json", "as_json", is_flag=True)
def payments_reconcile(since_text: str | None, as_json: bool) -> None:
    """Credit paid checkout sessions whose webhook never arrived; list mismatches.

    Exit 0 when nothing needs attention, 3 when mismatches or sessions without an order were
    found, 1 when the run could not read a provider (or was refused)."""
    with refusals():
        since = reconcile.parse_since(since_text)
        report = reconcile.reconcile(since=since, trigger="cli")
    shown = report.describe()
    emit(shown, as_json, _text(shown))
    if report.error:
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_FINDINGS if report.needs_attention else EXIT_OK)


@group.command("last-run")
@click.option("--json", "as_json", is_flag=True)
def payments_last_run(as_json: bool) -> None:
    """The last reconcile run (any trigger), as `reconcile --json` printed it."""

    def work(session: Session) -> dict[str, Any] | None:
        run = reconcile.last_run(session)
        return reconcile.describe_run(run) if run is not None else None

    shown = in_transaction(work, readonly=True)
    if shown is None:
        emit({"run": None}, as_json, "no reconcile run yet")
        return
    emit(shown, as_json, _text(shown))


@group.command("disputes")
@click.option(
    "--status",
    type=click.Choice(["open", "won", "lost", "warning_closed"]),
    default=None,
)
@click.option("--json", "as_json", is_flag=True)
def payments_disputes(status: str | None, as_json: bool) -> None:
    """Disputed payments, newest first, with the credits frozen for each."""
    shown = in_transaction(
        lambda s: [disputes.describe_dispute(d) for d in disputes.list_disputes(s, status=status)],
        readonly=True,
    )
    lines = [
        f"{d['dispute_id']}  {d['status']:<14} {d['order_id']}  {d['amount']} {d['currency']}  "
        f"frozen {d['credits_frozen']}  opened {d['opened_at']}"
        for d in shown
    ]
    emit({"disputes": shown}, as_json, "\n".join(lines) or "no disputes")
