"""`creditdash db`: schema migrations."""

from __future__ import annotations

import click

from creditdash.core import db


@click.group("db")
def group() -> None:
    """Database migrations."""


@group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations."""
    db.upgrade(revision=revision)
    click.echo(f"database at {revision}")


@group.command("downgrade")
@click.option("--revision", default="-1", show_default=True)
def db_downgrade(revision: str) -> None:
    """Undo migrations (default: the last one)."""
    before = db.current_revision()
    db.downgrade(revision=revision)
    after = db.current_revision()
    click.echo(f"database downgraded from {before or 'base'} to {after or 'base'}")
