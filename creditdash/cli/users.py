"""`creditdash users`: dashboard logins, the platform administrators among them."""

from __future__ import annotations

import click
from sqlmodel import Session

from creditdash.accounts import sessions, users
from creditdash.cli.common import in_transaction, raise_refusal


@click.group("users")
def group() -> None:
    """Dashboard users."""


@group.command("create-admin")
@click.option("--email", required=True)
@click.password_option("--password", prompt=True)
def users_create_admin(email: str, password: str) -> None:
    """Create a platform administrator."""
    in_transaction(
        lambda s: users.create_user(s, email=email, password=password, is_platform_admin=True)
    )
    click.echo(f"admin {email.lower()} created")


@group.command("set-password")
@click.argument("email")
@click.password_option("--password", prompt=True)
def users_set_password(email: str, password: str) -> None:
    """Set a user's password (and sign them out everywhere)."""

    def work(session: Session) -> None:
        user = users.get_user_by_email(session, email)
        if user is None or user.id is None:
            raise_refusal("no user with that email")
            return
        users.set_password(session, user_id=user.id, new_password=password)
        sessions.end_all_sessions(session, user_id=user.id)

    in_transaction(work)
    click.echo("password set")
