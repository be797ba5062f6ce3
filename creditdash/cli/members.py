"""`creditdash members`: a workspace's members and invitations, as the operator.

The operator (audit actor "cli") bypasses the role checks a member is held to, but not the
last-owner rule. `invite` prints the link, for an install whose mail is not configured yet.
"""

from __future__ import annotations

import click
from sqlmodel import Session

from creditdash.accounts import invites, members
from creditdash.accounts.users import normalize_email
from creditdash.cli.common import emit, in_transaction
from creditdash.core.audit import CLI

_ROLE = click.Choice(["owner", "admin", "developer", "billing", "viewer"])


@click.group("members")
def group() -> None:
    """Workspace members, their roles, and invitations."""


@group.command("invite")
@click.option("--customer", "customer_id", required=True)
@click.option("--email", required=True)
@click.option("--role", type=_ROLE, required=True)
@click.option("--json", "as_json", is_flag=True)
def members_invite(customer_id: str, email: str, role: str, as_json: bool) -> None:
    """Invite an address (emailed through the outbox); prints the invitation link."""

    def work(session: Session) -> dict[str, str]:
        invite, raw = invites.create_invite(
            session, customer_id=customer_id, inviter=CLI, email=email, role=role
        )
        return {
            "invite_id": invite.id,
            "email": invite.email,
            "role": invite.role,
            "expires_at": invite.expires_at.isoformat(),
            "link": invites.invite_link(raw),
        }

    out = in_transaction(work)
    emit(out, as_json, f"invited {out['email']} as {out['role']}\nlink: {out['link']}")


@group.command("list")
@click.option("--customer", "customer_id", required=True)
@click.option("--json", "as_json", is_flag=True)
def members_list(customer_id: str, as_json: bool) -> None:
    """The workspace's members with their roles."""
    listed = in_transaction(lambda s: members.list_members(s, customer_id), readonly=True)
    rows = [
        {"email": m.email, "name": m.name, "role": m.role, "joined": m.joined.isoformat()}
        for m in listed
    ]
    emit(
        {"customer_id": customer_id, "members": rows},
        as_json,
        "\n".join(f"{r['email']}\t{r['role']}\t{r['joined'][:10]}" for r in rows) or "no members",
    )


def _target(session: Session, customer_id: str, email: str) -> int:
    return members.user_id_by_email(session, customer_id=customer_id, email=normalize_email(email))


@group.command("remove")
@click.option("--customer", "customer_id", required=True)
@click.option("--email", required=True)
def members_remove(customer_id: str, email: str) -> None:
    """Take a member out of the workspace (never its last owner)."""

    def work(session: Session) -> None:
        members.remove_member(
            session,
            customer_id=customer_id,
            actor=CLI,
            target_user_id=_target(session, customer_id, email),
        )

    in_transaction(work)
    click.echo(f"removed {email.strip().lower()}")


@group.command("role")
@click.option("--customer", "customer_id", required=True)
@click.option("--email", required=True)
@click.option("--role", type=_ROLE, required=True)
def members_role(customer_id: str, email: str, role: str) -> None:
    """Change a member's role (the last owner keeps theirs)."""

    def work(session: Session) -> str:
        return members.change_role(
            session,
            customer_id=customer_id,
            actor=CLI,
            target_user_id=_target(session, customer_id, email),
            role=role,
        )

    before = in_transaction(work)
    click.echo(f"{email.strip().lower()}: {before} -> {role}")
