"""`creditdash catalog`: the providers, model prices and routes the gateway sells."""

from __future__ import annotations

from pathlib import Path

import click

from creditdash.catalog import importer as catalog
from creditdash.cli.common import in_transaction, refusals


@click.group("catalog")
def group() -> None:
    """Providers, model prices and routes."""


@group.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def catalog_import(path: str) -> None:
    """Upsert providers, prices and routes from YAML; all or nothing. Prints the margins."""
    with refusals():
        spec = catalog.parse_catalog(Path(path).read_text(encoding="utf-8"))
    margins = in_transaction(lambda s: catalog.import_catalog(s, spec))
    click.echo(
        f"imported {len(spec.providers)} providers and {len(spec.models)} models; "
        f"margins for {catalog.REFERENCE_MIX.prompt_tokens} prompt + "
        f"{catalog.REFERENCE_MIX.completion_tokens} completion tokens:"
    )
    for line in margins:
        click.echo("  " + line.describe())
    for worst in catalog.worst_routes(margins):
        click.echo(f"worst route for {worst.model}: {worst.provider}/{worst.upstream_model}")
