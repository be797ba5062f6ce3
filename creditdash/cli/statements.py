"""`creditdash statements`: a customer's ledger or request log over some days, as CSV."""

from __future__ import annotations

import click
from sqlmodel import Session

from creditdash.accounts import customers
from creditdash.billing.invoicing import statements
from creditdash.cli.common import in_transaction


@click.group("statements")
def group() -> None:
    """CSV statements of a customer's ledger and request log."""


@group.command("export")
@click.option("--customer", "customer_id", required=True)
@click.option("--from", "first", required=True, help="First day, YYYY-MM-DD (UTC).")
@click.option("--to", "last", required=True, help="Last day, included.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--kind",
    type=click.Choice(["ledger", "requests"]),
    default="ledger",
    show_default=True,
    help="ledger: balance movements; requests: the request log.",
)
def statements_export(customer_id: str, first: str, last: str, out_path: str, kind: str) -> None:
    def work(session: Session) -> str:
        customers.get_customer(session, customer_id)
        period = statements.Period.of_days(
            statements.parse_day(first, "--from"), statements.parse_day(last, "--to")
        )
        if kind == "requests":
            return statements.request_log_csv(session, customer_id=customer_id, period=period)
        rows = statements.statement(session, customer_id=customer_id, period=period)
        return statements.statement_csv(rows)

    text = in_transaction(work, readonly=True)
    with open(out_path, "w", newline="", encoding="utf-8") as handle:
        handle.write(text)
    click.echo(f"wrote {out_path} ({text.count(chr(10)) - 1} rows)")
