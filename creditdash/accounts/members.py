"""A workspace's members: who they are, their roles, leaving, removal and ownership.

The rules:
- admins change roles among admin/developer/billing/viewer, of members who are not owners;
- only owners make or unmake owners (and transfer ownership);
- a workspace always keeps at least one owner: the last one can be neither demoted, removed,
  nor leave.

The last rule must hold when two owners demote each other at the same moment. Every change
first locks the workspace's membership rows (SELECT ... FOR UPDATE on PostgreSQL; SQLite has one
writer at a time anyway), so the second change reads what the first committed. And the write
itself is conditional: its WHERE recounts the owners, so even a path that skipped the lock
cannot leave zero owners; a rowcount of 0 is a refusal and nothing changed.

`actor` is an audit Actor: a user (their role is checked against accounts/roles.py), or the
operator (CLI, admin pages), who has no user id and bypasses the role checks but never the
last-owner rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from creditdash.accounts import roles
from creditdash.accounts.models import MEMBER_ROLES, Membership, User
from creditdash.core.audit import Actor, record
from creditdash.core.db import rowcount
from creditdash.core.errors import Conflict, Forbidden, NotFound, ValidationFailed

LAST_OWNER = "A workspace needs at least one owner: make someone else an owner first."


@dataclass(frozen=True)
class Member:
    user_id: int
    email: str
    name: str
    role: str
    joined: datetime


def list_members(session: Session, customer_id: str) -> list[Member]:
    """The workspace's members, owners first, then by when they joined."""
    rows = session.execute(
        select(User, Membership)
        .join(Membership, col(Membership.user_id) == col(User.id))
        .where(col(Membership.customer_id) == customer_id)
        .order_by(col(Membership.created_at), col(Membership.id))
    ).all()
    members = [
        Member(user.id, user.email, user.display_name, m.role, m.created_at)
        for user, m in rows
        if user.id is not None
    ]
    return sorted(members, key=lambda m: MEMBER_ROLES.index(m.role))


def _lock(session: Session, customer_id: str) -> dict[int, str]:
    """Lock the workspace's memberships for this transaction; user id -> role."""
    rows = session.execute(
        select(col(Membership.user_id), col(Membership.role))
        .where(col(Membership.customer_id) == customer_id)
        .order_by(col(Membership.id))
        .with_for_update()
    ).all()
    return {int(user_id): str(role) for user_id, role in rows}


def _check_actor(locked: dict[int, str], *, actor: Actor, permission: str) -> str | None:
    """The acting user's role, read under the lock, if it allows the permission (None for the
    operator). A non-member is refused like a member whose role does not allow it."""
    if actor.user_id is None:
        return None
    role = locked.get(actor.user_id)
    if not roles.allows(role, permission):
        raise Forbidden(roles.refusal(permission))
    assert role is not None
    return role


def _owners_besides(customer_id: str) -> object:
    """A WHERE clause: the target row is not an owner, or another owner remains."""
    other = aliased(Membership)
    owners = (
        select(func.count())
        .select_from(other)
        .where(col(other.customer_id) == customer_id, col(other.role) == "owner")
        .scalar_subquery()
    )
    return or_(col(Membership.role) != "owner", owners > 1)


def _may_touch(actor_role: str | None, *, target_role: str, new_role: str | None) -> None:
    """Admins manage everyone but owners; only owners (and the operator) touch ownership."""
    if actor_role is None or actor_role == "owner":
        return
    if target_role == "owner" or new_role == "owner":
        raise Forbidden(roles.refusal("owners.manage"))


def change_role(
    session: Session, *, customer_id: str, actor: Actor, target_user_id: int, role: str
) -> str:
    """Give a member another role; the previous one is returned."""
    if role not in MEMBER_ROLES:
        raise ValidationFailed("role must be one of " + ", ".join(MEMBER_ROLES))
    locked = _lock(session, customer_id)
    actor_role = _check_actor(locked, actor=actor, permission="members.manage")
    before = locked.get(target_user_id)
    if before is None:
        raise NotFound("That user is not a member of this workspace.")
    _may_touch(actor_role, target_role=before, new_role=role)
    if before == role:
        return before
    result = session.execute(
        update(Membership)
        .where(
            col(Membership.customer_id) == customer_id,
            col(Membership.user_id) == target_user_id,
            col(Membership.role) == before,
            _owners_besides(customer_id),  # type: ignore[arg-type]
        )
        .values(role=role)
    )
    if rowcount(result) != 1:
        raise Conflict(LAST_OWNER)
    record(
        session,
        actor=actor,
        action="member.role",
        target_type="customer",
        target_id=customer_id,
        before={"user_id": target_user_id, "role": before},
        after={"user_id": target_user_id, "role": role},
    )
    return before


def _delete(session: Session, *, customer_id: str, user_id: int, role: str) -> None:
    result = session.execute(
        delete(Membership).where(
            col(Membership.customer_id) == customer_id,
            col(Membership.user_id) == user_id,
            col(Membership.role) == role,
            _owners_besides(customer_id),  # type: ignore[arg-type]
        )
    )
    if rowcount(result) != 1:
        raise Conflict(LAST_OWNER)


def remove_member(session: Session, *, customer_id: str, actor: Actor, target_user_id: int) -> None:
    """Take a member out of the workspace (their account stays; so do keys they made)."""
    locked = _lock(session, customer_id)
    actor_role = _check_actor(locked, actor=actor, permission="members.manage")
    role = locked.get(target_user_id)
    if role is None:
        raise NotFound("That user is not a member of this workspace.")
    if actor.user_id == target_user_id:
        raise ValidationFailed("To take yourself out of a workspace, leave it.")
    _may_touch(actor_role, target_role=role, new_role=None)
    _delete(session, customer_id=customer_id, user_id=target_user_id, role=role)
    record(
        session,
        actor=actor,
        action="member.remove",
        target_type="customer",
        target_id=customer_id,
        before={"user_id": target_user_id, "role": role},
    )


def leave_workspace(session: Session, *, customer_id: str, actor: Actor) -> None:
    """The acting user leaves the workspace (the last owner cannot)."""
    if actor.user_id is None:
        raise ValidationFailed("Only a member can leave a workspace.")
    locked = _lock(session, customer_id)
    role = locked.get(actor.user_id)
    if role is None:
        raise NotFound("You are not a member of this workspace.")
    _delete(session, customer_id=customer_id, user_id=actor.user_id, role=role)
    record(
        session,
        actor=actor,
        action="member.leave",
        target_type="customer",
        target_id=customer_id,
        before={"user_id": actor.user_id, "role": role},
    )


def transfer_ownership(
    session: Session, *, customer_id: str, actor: Actor, target_user_id: int
) -> None:
    """Another member becomes an owner and the acting owner becomes an admin, together."""
    if actor.user_id is None:
        raise ValidationFailed("Only an owner can hand over their ownership.")
    if actor.user_id == target_user_id:
        raise ValidationFailed("Choose another member to hand the workspace to.")
    locked = _lock(session, customer_id)
    _check_actor(locked, actor=actor, permission="owners.manage")
    target_role = locked.get(target_user_id)
    if target_role is None:
        raise NotFound("That user is not a member of this workspace.")
    # The target first: while they are an owner the actor is never the last one.
    if target_role != "owner":
        promoted = session.execute(
            update(Membership)
            .where(
                col(Membership.customer_id) == customer_id,
                col(Membership.user_id) == target_user_id,
                col(Membership.role) == target_role,
            )
            .values(role="owner")
        )
        if rowcount(promoted) != 1:
            raise Conflict("That member's role changed a moment ago; try again.")
    demoted = session.execute(
        update(Membership)
        .where(
            col(Membership.customer_id) == customer_id,
            col(Membership.user_id) == actor.user_id,
            col(Membership.role) == "owner",
            _owners_besides(customer_id),  # type: ignore[arg-type]
        )
        .values(role="admin")
    )
    if rowcount(demoted) != 1:
        raise Conflict(LAST_OWNER)
    record(
        session,
        actor=actor,
        action="member.transfer_ownership",
        target_type="customer",
        target_id=customer_id,
        before={"owner": actor.user_id, "user_id": target_user_id, "role": target_role},
        after={"owner": target_user_id, "admin": actor.user_id},
    )


def user_id_by_email(session: Session, *, customer_id: str, email: str) -> int:
    """A member's user id by their email (the CLI names members by address)."""
    found = session.execute(
        select(col(User.id))
        .join(Membership, col(Membership.user_id) == col(User.id))
        .where(col(Membership.customer_id) == customer_id, col(User.email) == email.lower())
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"{email} is not a member of this workspace.")
    return int(found)
