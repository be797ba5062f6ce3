"""Invitations into a workspace, by email, for new and existing accounts.

An invitation is a random single-use token mailed to the address (only its SHA-256 is kept).
Opening the link proves the mailbox, so the invitation can be accepted only by the account with
that email: a signed-in user with another address is refused, and an address with no account
creates one from the link. Someone who registered a colleague's address first therefore gains
nothing, since they would still need the colleague's mailbox.

Accepting is one conditional UPDATE (still open, not expired) checked by its row count, so a
link clicked twice, or revoked or resent in between, is used at most once.

`inviter`/`actor` is an audit Actor: a member (their role is checked: members.manage, and
owners.manage for an owner's invite) or the operator (no user id), who bypasses the check.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from creditdash.accounts import roles
from creditdash.accounts.models import MEMBER_ROLES, Customer, Invite, Membership, User
from creditdash.accounts.users import create_user, get_user_by_email, normalize_email
from creditdash.core import outbox
from creditdash.core.audit import Actor, record
from creditdash.core.db import rowcount
from creditdash.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from creditdash.core.ids import new_id
from creditdash.core.settings import get_settings
from creditdash.core.timeutil import utcnow

INVITE_PATH = "/invite"
MAX_TOKEN_CHARS = 200
NOT_VALID = "This invitation link is not valid: ask for a new one."


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def invite_link(raw_token: str) -> str:
    return f"{get_settings().resolved_public_url()}{INVITE_PATH}?token={raw_token}"


def _check(session: Session, *, actor: Actor, customer_id: str, role: str) -> None:
    if actor.user_id is None:
        return
    roles.require(
        session, user_id=actor.user_id, customer_id=customer_id, permission="members.manage"
    )
    if role == "owner":
        roles.require(
            session, user_id=actor.user_id, customer_id=customer_id, permission="owners.manage"
        )


def _inviter_label(session: Session, actor: Actor) -> str:
    if actor.user_id is None:
        return "The operator of this creditdash"
    user = session.get(User, actor.user_id)
    if user is None:
        return "A teammate"
    return f"{user.display_name} ({user.email})" if user.display_name else user.email


def _mail(session: Session, invite: Invite, raw: str, *, workspace: str, inviter: str) -> None:
    role = roles.ROLE_LABELS[invite.role]
    outbox.enqueue_mail(
        session,
        to=invite.email,
        subject=f"You are invited to {workspace} on creditdash",
        text=(
            f"{inviter} invited you to join the workspace {workspace} as {role}.\n\n"
            f"Accept the invitation here:\n{invite_link(raw)}\n\n"
            f"The link works once and expires on {invite.expires_at:%Y-%m-%d %H:%M} UTC. "
            "If you did not expect it, ignore this email."
        ),
        kind="invite",
        customer_id=invite.customer_id,
    )


def _workspace(session: Session, customer_id: str) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound("customer not found")
    return customer


def create_invite(
    session: Session, *, customer_id: str, inviter: Actor, email: str, role: str
) -> tuple[Invite, str]:
    """Invite an address into the workspace and queue the email; the row and the raw token
    (the operator's CLI prints its link, for an install that sends no mail)."""
    if role not in MEMBER_ROLES:
        raise ValidationFailed("role must be one of " + ", ".join(MEMBER_ROLES))
    normalized = normalize_email(email)
    customer = _workspace(session, customer_id)
    _check(session, actor=inviter, customer_id=customer_id, role=role)
    existing = get_user_by_email(session, normalized)
    if (
        existing is not None
        and existing.id is not None
        and roles.role_of(session, user_id=existing.id, customer_id=customer_id) is not None
    ):
        raise Conflict(f"{normalized} is already a member of this workspace.")
    now = utcnow()
    # An expired invite still counts as open for the unique index; retire it so that a new one
    # can be made (it could not be accepted anyway).
    session.execute(
        update(Invite)
        .where(
            col(Invite.customer_id) == customer_id,
            col(Invite.email) == normalized,
            col(Invite.accepted_at).is_(None),
            col(Invite.revoked_at).is_(None),
            col(Invite.expires_at) <= now,
        )
        .values(revoked_at=now)
    )
    raw = secrets.token_urlsafe(32)
    invite = Invite(
        id=new_id("inv"),
        customer_id=customer_id,
        email=normalized,
        role=role,
        token_hash=hash_token(raw),
        invited_by_user_id=inviter.user_id,
        created_at=now,
        expires_at=now + timedelta(seconds=get_settings().invite_ttl_s),
    )
    try:
        with session.begin_nested():
            session.add(invite)
            session.flush()
    except IntegrityError:
        raise Conflict(
            f"{normalized} already has an open invitation: resend or revoke it."
        ) from None
    _mail(session, invite, raw, workspace=customer.name, inviter=_inviter_label(session, inviter))
    record(
        session,
        actor=inviter,
        action="invite.create",
        target_type="customer",
        target_id=customer_id,
        after={"invite_id": invite.id, "email": normalized, "role": role},
    )
    return invite, raw


def list_pending(session: Session, customer_id: str) -> list[Invite]:
    """Invitations neither accepted nor revoked (expired ones too: the page says so)."""
    return list(
        session.execute(
            select(Invite)
            .where(
                col(Invite.customer_id) == customer_id,
                col(Invite.accepted_at).is_(None),
                col(Invite.revoked_at).is_(None),
            )
            .order_by(col(Invite.created_at))
        )
        .scalars()
        .all()
    )


def _open_invite(session: Session, *, customer_id: str, invite_id: str) -> Invite:
    invite = session.get(Invite, invite_id)
    if (
        invite is None
        or invite.customer_id != customer_id
        or invite.accepted_at is not None
        or invite.revoked_at is not None
    ):
        raise NotFound("That invitation is not open any more.")
    return invite


def revoke_invite(session: Session, *, customer_id: str, actor: Actor, invite_id: str) -> None:
    invite = _open_invite(session, customer_id=customer_id, invite_id=invite_id)
    _check(session, actor=actor, customer_id=customer_id, role=invite.role)
    result = session.execute(
        update(Invite)
        .where(
            col(Invite.id) == invite_id,
            col(Invite.accepted_at).is_(None),
            col(Invite.revoked_at).is_(None),
        )
        .values(revoked_at=utcnow())
    )
    if rowcount(result) != 1:
        raise NotFound("That invitation is not open any more.")
    record(
        session,
        actor=actor,
        action="invite.revoke",
        target_type="customer",
        target_id=customer_id,
        before={"invite_id": invite_id, "email": invite.email, "role": invite.role},
    )


def resend_invite(
    session: Session, *, customer_id: str, actor: Actor, invite_id: str
) -> tuple[Invite, str]:
    """A new token and expiry for an open invitation, mailed again; the old link stops working
    (its hash is no longer stored anywhere)."""
    invite = _open_invite(session, customer_id=customer_id, invite_id=invite_id)
    _check(session, actor=actor, customer_id=customer_id, role=invite.role)
    raw = secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(seconds=get_settings().invite_ttl_s)
    result = session.execute(
        update(Invite)
        .where(
            col(Invite.id) == invite_id,
            col(Invite.token_hash) == invite.token_hash,
            col(Invite.accepted_at).is_(None),
            col(Invite.revoked_at).is_(None),
        )
        .values(token_hash=hash_token(raw), expires_at=expires_at)
    )
    if rowcount(result) != 1:
        raise NotFound("That invitation is not open any more.")
    session.refresh(invite)
    customer = _workspace(session, customer_id)
    _mail(session, invite, raw, workspace=customer.name, inviter=_inviter_label(session, actor))
    record(
        session,
        actor=actor,
        action="invite.resend",
        target_type="customer",
        target_id=customer_id,
        after={"invite_id": invite_id, "email": invite.email},
    )
    return invite, raw


@dataclass(frozen=True)
class InviteView:
    """What the /invite page shows about a link before it is accepted."""

    email: str
    role: str
    workspace: str
    expires_at: datetime
    has_account: bool
    usable: bool
    problem: str  # why it cannot be used ("" when usable)


def _find(session: Session, token: str) -> Invite | None:
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return session.execute(
        select(Invite).where(col(Invite.token_hash) == hash_token(token))
    ).scalar_one_or_none()


def _problem(invite: Invite) -> str:
    if invite.accepted_at is not None:
        return "This invitation was already accepted."
    if invite.revoked_at is not None:
        return "This invitation was withdrawn: ask for a new one."
    if invite.expires_at <= utcnow():
        return "This invitation has expired: ask for a new one."
    return ""


def view_invite(session: Session, token: str) -> InviteView:
    invite = _find(session, token)
    if invite is None:
        raise NotFound(NOT_VALID)
    problem = _problem(invite)
    return InviteView(
        email=invite.email,
        role=invite.role,
        workspace=_workspace(session, invite.customer_id).name,
        expires_at=invite.expires_at,
        has_account=get_user_by_email(session, invite.email) is not None,
        usable=not problem,
        problem=problem,
    )


@dataclass(frozen=True)
class Accepted:
    customer_id: str
    role: str
    # True when the user already belonged to the workspace: their role was left as it was.
    already_member: bool

    @property
    def message(self) -> str:
        if self.already_member:
            return (
                f"You were already a member of this workspace; your role ({self.role}) "
                "is unchanged."
            )
        return f"You joined the workspace as {self.role}."


def accept_invite(session: Session, *, token: str, user_id: int) -> Accepted:
    """The signed-in user accepts; their email must be the invitation's."""
    invite = _find(session, token)
    if invite is None:
        raise NotFound(NOT_VALID)
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise Forbidden("Sign in to accept this invitation.")
    if user.email != invite.email:
        raise Forbidden(
            f"This invitation is for {invite.email}, and you are signed in as {user.email}: "
            f"sign out, then open the link again and sign in (or sign up) as {invite.email}."
        )
    now = utcnow()
    result = session.execute(
        update(Invite)
        .where(
            col(Invite.id) == invite.id,
            col(Invite.token_hash) == invite.token_hash,
            col(Invite.accepted_at).is_(None),
            col(Invite.revoked_at).is_(None),
            col(Invite.expires_at) > now,
        )
        .values(accepted_at=now, accepted_by_user_id=user_id)
    )
    if rowcount(result) != 1:
        session.refresh(invite)
        raise Conflict(_problem(invite) or NOT_VALID)
    current = roles.role_of(session, user_id=user_id, customer_id=invite.customer_id)
    if current is None:
        try:
            with session.begin_nested():
                session.add(
                    Membership(customer_id=invite.customer_id, user_id=user_id, role=invite.role)
                )
                session.flush()
        except IntegrityError:
            # Joined by another path a moment ago: keep that membership as it is.
            current = roles.role_of(session, user_id=user_id, customer_id=invite.customer_id)
    record(
        session,
        actor=Actor.user(user_id, user.email),
        action="invite.accept",
        target_type="customer",
        target_id=invite.customer_id,
        after={"invite_id": invite.id, "role": current or invite.role},
    )
    return Accepted(invite.customer_id, current or invite.role, already_member=current is not None)


def accept_invite_as_new_user(
    session: Session, *, token: str, password: str, display_name: str = ""
) -> User:
    """An account for the invitation's address, and its membership, in the caller's
    transaction (a refusal after the account was made rolls both back)."""
    invite = _find(session, token)
    if invite is None:
        raise NotFound(NOT_VALID)
    if problem := _problem(invite):
        raise Conflict(problem)
    if get_user_by_email(session, invite.email) is not None:
        raise Conflict(f"{invite.email} already has an account: sign in to accept.")
    user = create_user(session, email=invite.email, password=password, display_name=display_name)
    assert user.id is not None
    accept_invite(session, token=token, user_id=user.id)
    return user
