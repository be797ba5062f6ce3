"""`creditdash upstream`: what the providers say they charged, against what the gateway recorded."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import click
from sqlmodel import Session

from creditdash.cli.common import emit, in_transaction, raise_refusal_exit
from creditdash.core.audit import CLI
from creditdash.core.money import format_credits, parse_credits
from creditdash.upstream import csv_import, reconcile, sources


@click.group("upstream")
def group() -> None:
    """Upstream providers' cost reports: admin keys, CSV imports, reconciliation."""


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise_refusal_exit(f"{option} {text!r} is not a date (YYYY-MM-DD)")


@group.command("set-admin-key")
@click.option("--provider", required=True, help="The provider's name in the catalog")
@click.option("--base-url", default="", help="The admin API's base URL (default: the kind's)")
@click.option("--json", "as_json", is_flag=True)
def upstream_set_admin_key(provider: str, base_url: str, as_json: bool) -> None:
    """Store the operator's admin key for a provider's cost report (read from stdin or a
    hidden prompt; never echoed)."""
    interactive = sys.stdin.isatty()
    key = click.prompt("admin key", hide_input=True) if interactive else sys.stdin.readline()
    view = in_transaction(
        lambda s: sources.set_admin_key(
            s, provider=provider, api_key=key, base_url=base_url, actor=CLI
        )
    )
    emit({"provider": view.provider, "kind": view.kind, "base_url": view.base_url,
          "key_hint": view.key_hint}, as_json,
         f"admin key {view.key_hint} stored for {view.provider} ({view.base_url})")  # fmt: skip


def _text(report: reconcile.Reconciliation) -> str:
    lines = [
        f"{report.provider} {report.first_day} to {report.last_day}: reported "
        f"{format_credits(report.reported_total_micros)}, recorded "
        f"{format_credits(report.recorded_total_micros)} "
        f"(tolerance {format_credits(report.tolerance_micros)})"
    ]
    for ln in report.differences:
        reported = "none" if ln.reported_micros is None else format_credits(ln.reported_micros)
        lines.append(
            f"  {ln.day}  {ln.model:<36} reported {reported:>14}  recorded "
            f"{format_credits(ln.recorded_micros):>14}  difference "
            f"{format_credits(ln.difference_micros):>14}"
        )
    if not report.differences:
        lines.append("  no differences over the tolerance")
    return "\n".join(lines)


@group.command("reconcile")
@click.option("--provider", required=True)
@click.option("--from", "first", required=True, help="First UTC day (YYYY-MM-DD)")
@click.option("--to", "last", required=True, help="Last UTC day, included")
@click.option("--tolerance", default=None, help="Credits a day and model may differ by")
@click.option("--no-fetch", is_flag=True, help="Use the stored reports (e.g. a CSV) only")
@click.option("--json", "as_json", is_flag=True)
def upstream_reconcile(
    provider: str,
    first: str,
    last: str,
    tolerance: str | None,
    no_fetch: bool,
    as_json: bool,
) -> None:
    """Fetch the provider's daily costs per model, store them, and show the differences."""
    first_day, last_day = _day(first, "--from"), _day(last, "--to")

    def work(session: Session) -> reconcile.Reconciliation:
        tolerance_micros = parse_credits(tolerance, field="--tolerance") if tolerance else None
        if not no_fetch:
            reconcile.fetch_and_store(
                session, provider=provider, first_day=first_day, last_day=last_day, actor=CLI
            )
        return reconcile.reconcile(
            session,
            provider=provider,
            first_day=first_day,
            last_day=last_day,
            tolerance_micros=tolerance_micros,
        )

    report = in_transaction(work)
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        click.echo(_text(report))


@group.command("import-costs")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def upstream_import_costs(path: str, as_json: bool) -> None:
    """Import (day, provider, model, cost in USD) rows from a CSV; all or nothing."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise_refusal_exit(f"{path} is not UTF-8 text")
    counts = in_transaction(lambda s: csv_import.import_costs_csv(s, text=text, actor=CLI))
    emit({"imported": counts}, as_json,
         "imported " + ", ".join(f"{n} rows for {p}" for p, n in counts.items()))  # fmt: skip
