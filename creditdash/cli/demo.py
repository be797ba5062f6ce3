"""`creditdash demo`: the demo data a fresh install can be tried with."""

from __future__ import annotations

import click

from creditdash import demo as seed
from creditdash.cli.common import refusals


@click.command()
@click.option("--if-empty", is_flag=True, help="Seed only when the database has no users yet.")
def demo(if_empty: bool) -> None:
    """Seed the demo admin, customer and key; safe to run again. Prints the logins."""
    with refusals():
        report = seed.seed_demo(only_if_empty=if_empty)
    for line in report:
        click.echo(line)
