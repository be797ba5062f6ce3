"""Inviting teammates into a workspace, and a user's role in one.

Self-service sign-up makes a workspace with its ledger account, so it is in billing/onboarding.py.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from creditdash.accounts.models import Membership
from creditdash.accounts.users import (
    create_user,
    get_user_by_email,
    normalize_email,
    set_password,
)
from creditdash.core.audit import Actor, record
from creditdash.core.errors import Conflict, Forbidden, ValidationFailed
from creditdash.core.settings import get_settings

INVITABLE_ROLES = ("admin", "developer", "billing", "viewer")


def role_in(session: Session, *, user_id: int, customer_id: str) -> str | None:
    return session.execute(
        select(col(Membership.role)).where(
            col(Membership.user_id) == user_id, col(Membership.customer_id) == customer_id
        )
    ).scalar_one_or_none()


def invite(
    session: Session, *, customer_id: str, inviter: Actor, email: str, role: str = "developer"
) -> str | None:
    """Add a teammate as a new user with a one-time password for the inviter to pass on (a
    self-hosted install sends no mail). It expires after invite_password_ttl_s and only lets
    its holder choose their own password, which the inviter then does not know.

    An email that already has an account is refused: nothing proves that whoever registered it
    owns the address, so joining it to this workspace unasked could hand the workspace to a
    stranger who signed up with a colleague's address first."""
    if role not in INVITABLE_ROLES:
        raise ValidationFailed("role must be admin, developer, billing or viewer")
    assert inviter.user_id is not None
    if role_in(session, user_id=inviter.user_id, customer_id=customer_id) not in (
        "owner",
        "admin",
    ):
        raise Forbidden("Only the workspace's owner or admins can invite teammates.")
    normalized = normalize_email(email)
    if get_user_by_email(session, normalized) is not None:
        raise Conflict(
            f"{normalized} already has an account; invitations to existing accounts "
            "need their own acceptance, which this version does not offer yet."
        )
    temporary = secrets.token_urlsafe(12)
    expires_in = timedelta(seconds=get_settings().invite_password_ttl_s)
    try:
        with session.begin_nested():
            user = create_user(session, email=normalized, password=None)
            assert user.id is not None
            set_password(session, user_id=user.id, new_password=temporary, expires_in=expires_in)
            session.add(Membership(customer_id=customer_id, user_id=user.id, role=role))
    except IntegrityError:
        raise Conflict(f"{normalized} was invited a moment ago.") from None
    record(
        session,
        actor=inviter,
        action="workspace.invite",
        target_type="customer",
        target_id=customer_id,
        after={"email": normalized, "role": role},
    )
    session.flush()
    return temporary
