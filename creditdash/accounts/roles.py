"""What each role in a workspace may do: one table, asked by every service and every event.

owner     everything, including the members (owners too) and deleting the workspace
admin     members except owners, keys, budgets, webhooks, billing
developer keys and usage; no billing, no members
billing   orders, invoices, statements, the billing profile; no keys
viewer    reads what the workspace has, changes nothing

A permission names an action ("keys.manage"); reading the overview and usage needs only
membership ("workspace.read"). Services take the acting user and check with require(); the
dashboard's workspace_event(permission=...) checks the same table again on every event, so a
role changed a moment ago applies to the next click.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from creditdash.accounts.models import MEMBER_ROLES, Membership
from creditdash.core.audit import Actor
from creditdash.core.errors import Forbidden

ROLES = MEMBER_ROLES  # the CHECK on memberships.role is built from the same tuple
ROLE_LABELS = {
    "owner": "Owner",
    "admin": "Admin",
    "developer": "Developer",
    "billing": "Billing",
    "viewer": "Viewer",
}

_EVERYONE = frozenset(ROLES)
_MANAGERS = frozenset({"owner", "admin"})

PERMISSIONS: dict[str, frozenset[str]] = {
    "workspace.read": _EVERYONE,  # overview, usage, request log, balance, budgets shown
    "workspace.delete": frozenset({"owner"}),
    "members.read": _EVERYONE,
    "members.manage": _MANAGERS,  # invite, remove, change roles (admins: not owners)
    "owners.manage": frozenset({"owner"}),  # make or unmake owners, transfer ownership
    "keys.read": frozenset({"owner", "admin", "developer", "viewer"}),
    "keys.manage": frozenset({"owner", "admin", "developer"}),
    "budgets.manage": _MANAGERS,
    "webhooks.read": frozenset({"owner", "admin", "developer", "viewer"}),
    "webhooks.manage": _MANAGERS,
    "billing.read": frozenset({"owner", "admin", "billing", "viewer"}),
    "billing.manage": frozenset({"owner", "admin", "billing"}),  # orders, billing profile
    # Saving a card for automatic top-ups and the rule that charges it.
    "autotopup.manage": frozenset({"owner", "admin", "billing"}),
}

# Who is told by email about what happens to the workspace's money.
MONEY_AUDIENCE = frozenset({"owner", "billing"})
ALERT_AUDIENCE = frozenset({"owner", "admin", "billing"})


def allows(role: str | None, permission: str) -> bool:
    """Whether a member with this role may do it (unknown permissions allow nobody)."""
    return role is not None and role in PERMISSIONS.get(permission, frozenset())


def role_of(session: Session, *, user_id: int, customer_id: str) -> str | None:
    """The user's role in the workspace, None for a non-member."""
    return session.execute(
        select(col(Membership.role)).where(
            col(Membership.user_id) == user_id, col(Membership.customer_id) == customer_id
        )
    ).scalar_one_or_none()


def require(session: Session, *, user_id: int, customer_id: str, permission: str) -> str:
    """The user's role if it allows the permission; Forbidden otherwise (also for a user who
    is not a member, so a stranger learns nothing about the workspace)."""
    role = role_of(session, user_id=user_id, customer_id=customer_id)
    if not allows(role, permission):
        raise Forbidden(refusal(permission))
    assert role is not None
    return role


def require_actor(session: Session, *, actor: Actor, customer_id: str, permission: str) -> None:
    """For services that take an audit Actor: a user is held to their role in the workspace;
    the operator (the CLI, the system: no user id) acts for every workspace and is not."""
    if actor.user_id is not None:
        require(session, user_id=actor.user_id, customer_id=customer_id, permission=permission)


def refusal(permission: str) -> str:
    """What a member whose role does not allow the permission is told."""
    allowed = [ROLE_LABELS[r].lower() for r in ROLES if r in PERMISSIONS.get(permission, ())]
    what = permission.split(".")[0]
    if not allowed:
        return "Nobody in a workspace may do that."
    who = ", ".join(allowed[:-1]) + (" or " if len(allowed) > 1 else "") + allowed[-1]
    return f"Your role does not allow this ({what}): ask a workspace {who}."
