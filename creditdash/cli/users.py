"""`creditdash users`: dashboard logins, the platform administrators among them."""

from __future__ import annotations

import click
from sqlmodel import Session

from creditdash.accounts import sessions, users
from creditdash.cli.common import in_transaction, raise_refusal
from creditdash.core.settings import get_settings


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
@click.option(
    "--temporary",
    is_flag=True,
    help="Make and print a one-time password that only lets the user choose their own.",
)
@click.option("--password", help="The new password (asked for when not given).")
def users_set_password(email: str, temporary: bool, password: str | None) -> None:
    """Set a user's password (and sign them out everywhere).

    With --temporary, a one-time password is made and printed once: for a user locked out of
    an install without mail, to pass on by hand. It works for
    CREDITDASH_ONE_TIME_PASSWORD_TTL_S, and only to choose a password of their own."""
    if temporary and password is not None:
        raise click.UsageError("--temporary makes the password; do not give --password too")
    if not temporary and password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    issued: list[str] = []

    def work(session: Session) -> None:
        user = users.get_user_by_email(session, email)
        if user is None or user.id is None:
            raise_refusal("no user with that email")
            return
        if temporary:
            issued.append(users.issue_one_time_password(session, user_id=user.id))
        else:
            assert password is not None
            users.set_password(session, user_id=user.id, new_password=password)
        sessions.end_all_sessions(session, user_id=user.id)

    in_transaction(work)
    if issued:
        hours = get_settings().one_time_password_ttl_s / 3600
        click.echo(f"one-time password (works for {hours:g} h, once): {issued[0]}")
    else:
        click.echo("password set")
