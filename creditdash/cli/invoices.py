"""`creditdash invoices`: the invoices and credit notes that paid and refunded orders issue."""

from __future__ import annotations

import json

import click

from creditdash.billing.invoicing import invoices
from creditdash.cli.common import in_transaction


@click.group("invoices")
def group() -> None:
    """Invoices and credit notes, issued when orders are paid or refunded."""


@group.command("list")
@click.option("--customer", "customer_id", default=None)
@click.option("--json", "as_json", is_flag=True)
def invoices_list(customer_id: str | None, as_json: bool) -> None:
    rows = in_transaction(
        lambda s: [
            invoices.describe_invoice(i) for i in invoices.list_invoices(s, customer_id=customer_id)
        ],
        readonly=True,
    )
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(
            f"{row['number']}  {row['kind']:<11} {str(row['issued_at'])[:10]}  {row['gross']:>10} "
            f"{row['currency']}  {row['tax_scheme']:<14} {row['order_id']}"
        )


@group.command("pdf")
@click.argument("number")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
def invoices_pdf(number: str, out_path: str) -> None:
    """Write the invoice's PDF (rendered from its issued snapshot)."""
    # Imported here: the renderer loads fpdf2 and fontTools, about a quarter of a second that
    # no other command needs.
    from creditdash.billing.invoicing import pdf

    data = in_transaction(
        lambda s: pdf.render_pdf(invoices.get_by_number(s, number)), readonly=True
    )
    with open(out_path, "wb") as handle:
        handle.write(data)
    click.echo(f"wrote {out_path} ({len(data)} bytes)")
