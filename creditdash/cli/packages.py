"""`creditdash packages`: the credit packages on sale."""

from __future__ import annotations

import json

import click
from sqlmodel import Session

from creditdash.billing.payments import packages
from creditdash.cli.common import in_transaction
from creditdash.core.audit import CLI
from creditdash.core.money import parse_credits, parse_minor


@click.group("packages")
def group() -> None:
    """Credit packages customers can buy."""


@group.command("list")
@click.option("--json", "as_json", is_flag=True)
def packages_list(as_json: bool) -> None:
    """Every package, on sale or not."""
    rows = in_transaction(
        lambda s: [packages.describe_package(p) for p in packages.list_packages(s)], readonly=True
    )
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(
            f"{row['name']:<12} {row['unit_price']:>10} {row['currency']}  "
            f"{row['credits']} credits + {row['bonus_credits']} bonus  "
            f"qty {row['min_quantity']}-{row['max_quantity']}"
            f"{'  manual' if row['manual_only'] else ''}{'' if row['active'] else '  (off sale)'}"
        )


@group.command("set")
@click.argument("name")
@click.option("--price", "price_text", required=True, help="Price per unit, e.g. 50.00")
@click.option("--currency", default="EUR", show_default=True)
@click.option("--credits", "credits_text", required=True, help="Credits per unit.")
@click.option("--bonus", "bonus_text", default="0", show_default=True, help="Bonus per unit.")
@click.option("--min-quantity", default=1, show_default=True, type=int)
@click.option("--max-quantity", default=1, show_default=True, type=int)
@click.option("--custom", is_flag=True, help="Contract terms, bank transfer only.")
@click.option("--off-sale", is_flag=True, help="Keep it, but stop selling it.")
@click.option("--description", default="")
def packages_set(
    name: str,
    price_text: str,
    currency: str,
    credits_text: str,
    bonus_text: str,
    min_quantity: int,
    max_quantity: int,
    custom: bool,
    off_sale: bool,
    description: str,
) -> None:
    """Create or update a package (matched by name, any case); audited."""

    def work(session: Session) -> str:
        spec = packages.PackageSpec(
            name=name,
            kind="custom" if custom else "standard",
            currency=currency,
            unit_price_minor=parse_minor(price_text, currency, field="--price"),
            credits_micros=parse_credits(credits_text, field="--credits"),
            bonus_micros=parse_credits(bonus_text, field="--bonus"),
            min_quantity=min_quantity,
            max_quantity=max_quantity,
            description=description,
            active=not off_sale,
        )
        return packages.save_package(session, spec=spec, actor=CLI).id

    click.echo(f"package {name}: {in_transaction(work)}")
