"""`creditdash tax`: the tax rates invoices are computed with."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

import click
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from creditdash.billing.invoicing.models import TaxRate
from creditdash.billing.invoicing.statements import parse_day
from creditdash.cli.common import in_transaction, raise_refusal, raise_refusal_exit
from creditdash.core.audit import CLI, record


@click.group("tax")
def group() -> None:
    """Tax rates by jurisdiction, with the day each takes effect."""


@group.command("rates")
@click.option("--jurisdiction", default=None, help="e.g. DE, GB, CA-ON; default: all")
@click.option("--json", "as_json", is_flag=True)
def tax_rates(jurisdiction: str | None, as_json: bool) -> None:
    """List the rates."""

    def work(session: Session) -> list[dict[str, object]]:
        query = select(TaxRate).order_by(col(TaxRate.jurisdiction), col(TaxRate.valid_from))
        if jurisdiction:
            query = query.where(col(TaxRate.jurisdiction) == jurisdiction.upper())
        return [
            {
                "jurisdiction": r.jurisdiction,
                "tax_name": r.tax_name,
                "rate_bp": r.rate_bp,
                "valid_from": r.valid_from.isoformat(),
                "valid_to": r.valid_to.isoformat() if r.valid_to else None,
            }
            for r in session.exec(query)
        ]

    rows = in_transaction(work, readonly=True)
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(
            f"{row['jurisdiction']:<6} {row['tax_name']:<9} {int(str(row['rate_bp'])) / 100:>6}%  "
            f"from {row['valid_from']}" + (f" to {row['valid_to']}" if row["valid_to"] else "")
        )


@group.command("set-rate")
@click.option("--jurisdiction", required=True, help="e.g. DE, GB, CA-ON")
@click.option("--name", "tax_name", required=True, help="VAT, GST, HST, ...")
@click.option("--rate", "rate_text", required=True, help="Percent, e.g. 19 or 25.5")
@click.option("--from", "first", required=True, help="First day it applies, YYYY-MM-DD.")
def tax_set_rate(jurisdiction: str, tax_name: str, rate_text: str, first: str) -> None:
    """Add a rate from a day on; orders opened before keep the rate they were shown."""

    def work(session: Session) -> str:
        try:
            basis_points = Decimal(rate_text) * 100
        except InvalidOperation:
            raise_refusal("--rate must be a percentage like 19 or 25.5")
        if basis_points != basis_points.to_integral_value() or not 0 <= basis_points <= 10_000:
            raise_refusal("--rate must be 0-100 with at most two decimals")
        code = jurisdiction.strip().upper()
        if not 2 <= len(code) <= 10 or not tax_name.strip():
            raise_refusal("--jurisdiction and --name are required")
        session.add(
            TaxRate(
                jurisdiction=code,
                tax_name=tax_name.strip()[:20],
                rate_bp=int(basis_points),
                valid_from=parse_day(first, "--from"),
            )
        )
        session.flush()
        record(
            session,
            actor=CLI,
            action="tax_rate.add",
            target_type="tax_rate",
            target_id=code,
            after={"rate_bp": int(basis_points), "valid_from": first, "tax_name": tax_name},
        )
        return code

    try:
        code = in_transaction(work)
    except IntegrityError:
        raise_refusal_exit(f"{jurisdiction.upper()} already has a rate starting {first}")
    click.echo(f"{code}: {rate_text}% from {first}")
