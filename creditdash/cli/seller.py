"""`creditdash seller`: the operator's company on its invoices."""

from __future__ import annotations

import json

import click

from creditdash.billing.invoicing import profiles
from creditdash.cli.common import in_transaction
from creditdash.core.audit import CLI


@click.group("seller")
def group() -> None:
    """The operator's company as invoices show it, and its tax registrations."""


@group.command("set")
@click.option("--legal-name", required=True)
@click.option("--country", required=True)
@click.option("--tax-id", default="")
@click.option("--address", default="")
@click.option("--city", default="")
@click.option("--postal-code", default="")
@click.option("--email", default="")
@click.option(
    "--registrations",
    default="",
    help="Where tax is collected besides the home country, e.g. EU_OSS,GB,AU",
)
@click.option("--bank-details", default="")
def seller_set(
    legal_name: str,
    country: str,
    tax_id: str,
    address: str,
    city: str,
    postal_code: str,
    email: str,
    registrations: str,
    bank_details: str,
) -> None:
    """Set the seller profile (audited)."""
    data = profiles.SellerInput(
        legal_name=legal_name,
        country=country,
        tax_id=tax_id,
        address_line1=address,
        city=city,
        postal_code=postal_code,
        email=email,
        registrations=tuple(r for r in registrations.split(",") if r.strip()),
        bank_details=bank_details,
    )
    payload = in_transaction(
        lambda s: profiles.describe_seller(profiles.save_seller(s, data=data, actor=CLI))
    )
    click.echo(json.dumps(payload))


@group.command("show")
def seller_show() -> None:
    payload = in_transaction(
        lambda s: profiles.describe_seller(profiles.get_seller(s)), readonly=True
    )
    click.echo(json.dumps(payload))
