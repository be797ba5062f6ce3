"""`creditdash ledger`: checking the ledger's invariants, and expiring holds by hand."""

from __future__ import annotations

import sys

import click

from creditdash import jobs
from creditdash.billing import health
from creditdash.cli.common import refusals
from creditdash.core import db


@click.group("ledger")
def group() -> None:
    """The double-entry ledger."""


@group.command("verify")
def ledger_verify() -> None:
    """Check every ledger invariant; exit 0 only if all hold."""
    with refusals(), db.session_scope(readonly=True, snapshot=True) as session:
        problems = health.check(session)
    if problems:
        for problem in problems:
            click.echo(f"violated: {problem}", err=True)
        sys.exit(1)
    click.echo(
        "ledger ok: debits equal credits, balances match transfers, holds resolved once, "
        "orders and refunds applied once"
    )


@group.command("expire-holds")
def ledger_expire_holds() -> None:
    """Expire holds past their deadline now (the app also does this periodically)."""
    with refusals():
        count = jobs.expire_holds_once()
    click.echo(f"expired {count} holds")
