"""The `creditdash` command: operators and scripts (docs/contract.md lists the stable part).

One module per command group; this one only builds the top-level group from them. What the
groups share (refusals, the transaction, output) is in common.py.
"""

from __future__ import annotations

from typing import Any

import click

from creditdash.cli import (
    alerts,
    autotopup,
    budgets,
    catalog,
    customers,
    db,
    demo,
    gateway,
    invoices,
    keys,
    ledger,
    mail,
    members,
    orders,
    packages,
    payments,
    prices,
    seller,
    statements,
    tax,
    upstream,
    users,
    webhooks,
)
from creditdash.cli.common import unreachable_database


class _Creditdash(click.Group):
    """The top-level group: a database that cannot be reached, whichever command met it, is
    one `error:` line on stderr and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            line = unreachable_database(exc)
            if line is None:
                raise
            click.echo(f"error: {line}", err=True)
            ctx.exit(1)


@click.group(cls=_Creditdash)
def main() -> None:
    """creditdash: usage credits, checkout, invoices and a metered AI gateway."""


for _group in (
    db.group,
    customers.group,
    keys.group,
    catalog.group,
    users.group,
    members.group,
    ledger.group,
    seller.group,
    tax.group,
    invoices.group,
    statements.group,
    packages.group,
    orders.group,
    budgets.group,
    webhooks.group,
    mail.group,
    alerts.group,
    prices.group,
    upstream.group,
    autotopup.group,
    payments.group,
):
    main.add_command(_group)
main.add_command(demo.demo)
main.add_command(gateway.gateway)

__all__ = ["main"]
