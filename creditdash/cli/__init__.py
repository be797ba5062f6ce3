"""The `creditdash` command: operators and scripts (docs/contract.md lists the stable part).

One module per command group; this one only builds the top-level group from them. What the
groups share (refusals, the transaction, output) is in common.py.
"""

from __future__ import annotations

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


@click.group()
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
