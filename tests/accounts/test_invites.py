"""Invitations by email: new and existing accounts, the right mailbox, single use, expiry."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import col

from creditdash.accounts import invites, users
from creditdash.accounts.customers import customers_of_user
from creditdash.accounts.models import Invite, Membership, User
from creditdash.core import db
from creditdash.core.audit import CLI, Actor, AuditEntry
from creditdash.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from creditdash.core.outbox import OutboxMail
from creditdash.core.timeutil import utcnow
from tests.factories import signed_up


def invite(customer_id: str, actor: Actor, email: str, role: str = "developer") -> str:
    with db.session_scope() as session:
        _row, raw = invites.create_invite(
            session, customer_id=customer_id, inviter=actor, email=email, role=role
        )
        return raw


def owner() -> tuple[Actor, str]:
    owner_id, customer_id = signed_up()
    return Actor.user(owner_id, "founder@example.com"), customer_id


def mails(kind: str = "invite") -> list[OutboxMail]:
    with db.session_scope(readonly=True) as session:
        return list(
            session.execute(
                select(OutboxMail).where(col(OutboxMail.kind) == kind).order_by(col(OutboxMail.id))
            ).scalars()
        )


def token_in(mail: OutboxMail) -> str:
    link = next(w for w in mail.body_text.split() if "/invite?token=" in w)
    return parse_qs(urlparse(link).query)["token"][0]


def roles_of(email: str) -> list[str]:
    with db.session_scope(readonly=True) as session:
        user = users.get_user_by_email(session, email)
        assert user is not None and user.id is not None
        return [role for _c, role in customers_of_user(session, user.id)]


def test_invite_queues_an_email_with_the_link_and_stores_only_a_hash(engine: Engine) -> None:
    actor, cid = owner()
    raw = invite(cid, actor, "  Mate@Example.com ", role="billing")
    [mail] = mails()
    assert mail.to_addr == "mate@example.com" and mail.customer_id == cid
    assert token_in(mail) == raw
    assert "http://localhost:3000/invite?token=" in mail.body_text
    assert "founder@example.com" in mail.body_text and "Acme Labs" in mail.body_text
    assert "Billing" in mail.body_text and "expires" in mail.body_text
    with db.session_scope(readonly=True) as session:
        row = session.execute(select(Invite)).scalar_one()
        assert row.email == "mate@example.com" and row.id.startswith("inv_")
        assert row.token_hash == invites.hash_token(raw) and raw not in row.token_hash
        assert row.expires_at - row.created_at == timedelta(days=7)
        assert "invite.create" in session.execute(select(col(AuditEntry.action))).scalars().all()


def test_new_user_accepts_by_creating_an_account(engine: Engine) -> None:
    actor, cid = owner()
    raw = invite(cid, actor, "new@example.com", role="viewer")
    with db.session_scope(readonly=True) as session:
        view = invites.view_invite(session, raw)
    assert (view.email, view.role, view.workspace) == ("new@example.com", "viewer", "Acme Labs")
    assert view.usable and not view.has_account
    with db.session_scope() as session:
        user = invites.accept_invite_as_new_user(
            session, token=raw, password="a-long-password-1", display_name="Newt"
        )
        assert user.email == "new@example.com"
    assert roles_of("new@example.com") == ["viewer"]
    # The link is spent.
    with db.session_scope() as session, pytest.raises(Conflict, match="already accepted"):
        invites.accept_invite_as_new_user(session, token=raw, password="a-long-password-1")


def test_new_user_with_a_weak_password_changes_nothing(engine: Engine) -> None:
    actor, cid = owner()
    raw = invite(cid, actor, "new@example.com")
    with db.session_scope() as session, pytest.raises(ValidationFailed):
        invites.accept_invite_as_new_user(session, token=raw, password="short")
    with db.session_scope(readonly=True) as session:
        assert users.get_user_by_email(session, "new@example.com") is None
        assert session.execute(select(Invite)).scalar_one().accepted_at is None


def test_existing_user_accepts_and_the_token_is_single_use(engine: Engine) -> None:
    actor, cid = owner()
    other_id, _other_cid = signed_up("mate@example.com")
    raw = invite(cid, actor, "mate@example.com", role="admin")
    with db.session_scope() as session:
        accepted = invites.accept_invite(session, token=raw, user_id=other_id)
    assert accepted.role == "admin" and not accepted.already_member
    assert sorted(roles_of("mate@example.com")) == ["admin", "owner"]
    with db.session_scope() as session, pytest.raises(Conflict, match="already accepted"):
        invites.accept_invite(session, token=raw, user_id=other_id)
    # An account that exists cannot be made again from the link.
    raw2 = invite(cid, actor, "third@example.com")
    signed_up("third@example.com")
    with db.session_scope() as session, pytest.raises(Conflict, match="sign in"):
        invites.accept_invite_as_new_user(session, token=raw2, password="a-long-password-1")


def test_a_different_signed_in_account_is_refused(engine: Engine) -> None:
    actor, cid = owner()
    raw = invite(cid, actor, "mate@example.com")
    other_id, _c = signed_up("someone@example.com")
    with db.session_scope() as session, pytest.raises(Forbidden, match=r"for mate@example\.com"):
        invites.accept_invite(session, token=raw, user_id=other_id)
    assert roles_of("someone@example.com") == ["owner"]
    with db.session_scope(readonly=True) as session:
        assert session.execute(select(Invite)).scalar_one().accepted_at is None


def test_already_member_keeps_their_role(engine: Engine) -> None:
    actor, cid = owner()
    with db.session_scope() as session:
        mate = users.create_user(session, email="mate@example.com", password="a-long-password-1")
        assert mate.id is not None
        mate_id = mate.id
    # Invited first, joined by another path before accepting.
    raw = invite(cid, actor, "mate@example.com", role="admin")
    with db.session_scope() as session:
        session.add(Membership(customer_id=cid, user_id=mate_id, role="viewer"))
    with db.session_scope() as session:
        accepted = invites.accept_invite(session, token=raw, user_id=mate_id)
    assert accepted.already_member and accepted.role == "viewer"
    assert "unchanged" in accepted.message
    assert roles_of("mate@example.com") == ["viewer"]
    with db.session_scope() as session, pytest.raises(Conflict, match="already a member"):
        invites.create_invite(
            session, customer_id=cid, inviter=actor, email="mate@example.com", role="viewer"
        )


def test_expired_revoked_and_unknown_links_are_refused(engine: Engine) -> None:
    actor, cid = owner()
    raw = invite(cid, actor, "mate@example.com")
    with db.session_scope() as session:
        session.execute(update(Invite).values(expires_at=utcnow() - timedelta(seconds=1)))
    with db.session_scope() as session, pytest.raises(Conflict, match="expired"):
        invites.accept_invite_as_new_user(session, token=raw, password="a-long-password-1")
    # A new invitation for the same address replaces the expired one.
    raw2 = invite(cid, actor, "mate@example.com")
    with db.session_scope(readonly=True) as session:
        [pending] = invites.list_pending(session, cid)
    with db.session_scope() as session:
        invites.revoke_invite(session, customer_id=cid, actor=actor, invite_id=pending.id)
    with db.session_scope() as session, pytest.raises(Conflict, match="withdrawn"):
        invites.accept_invite_as_new_user(session, token=raw2, password="a-long-password-1")
    for bad in ("", "nope", "x" * 500):
        with db.session_scope() as session, pytest.raises(NotFound):
            invites.accept_invite_as_new_user(session, token=bad, password="a-long-password-1")
    with db.session_scope(readonly=True) as session:
        assert users.get_user_by_email(session, "mate@example.com") is None
        assert invites.list_pending(session, cid) == []
        actions = session.execute(select(col(AuditEntry.action))).scalars().all()
        assert "invite.revoke" in actions


def test_one_open_invite_per_address_and_resend_kills_the_old_link(engine: Engine) -> None:
    actor, cid = owner()
    old = invite(cid, actor, "mate@example.com")
    with db.session_scope() as session, pytest.raises(Conflict, match="open invitation"):
        invites.create_invite(
            session, customer_id=cid, inviter=actor, email="MATE@example.com", role="viewer"
        )
    with db.session_scope(readonly=True) as session:
        [pending] = invites.list_pending(session, cid)
    with db.session_scope() as session:
        _row, new = invites.resend_invite(
            session, customer_id=cid, actor=actor, invite_id=pending.id
        )
    assert new != old
    assert [token_in(m) for m in mails()] == [old, new]
    with db.session_scope() as session, pytest.raises(NotFound):
        invites.accept_invite_as_new_user(session, token=old, password="a-long-password-1")
    with db.session_scope() as session:
        invites.accept_invite_as_new_user(session, token=new, password="a-long-password-1")
    assert roles_of("mate@example.com") == ["developer"]


def test_who_may_invite(engine: Engine) -> None:
    actor, cid = owner()
    admin_raw = invite(cid, actor, "admin@example.com", role="admin")
    with db.session_scope() as session:
        admin = invites.accept_invite_as_new_user(
            session, token=admin_raw, password="a-long-password-1"
        )
        assert admin.id is not None
        admin_actor = Actor.user(admin.id, admin.email)
    # Admins invite everyone but owners; owners invite owners; the operator anyone.
    invite(cid, admin_actor, "dev@example.com", role="developer")
    with db.session_scope() as session, pytest.raises(Forbidden):
        invites.create_invite(
            session, customer_id=cid, inviter=admin_actor, email="o@example.com", role="owner"
        )
    invite(cid, actor, "o@example.com", role="owner")
    invite(cid, CLI, "ops@example.com", role="owner")
    for role in ("developer", "billing", "viewer"):
        raw = invite(cid, actor, f"{role}@x.example.com", role=role)
        with db.session_scope() as session:
            user = invites.accept_invite_as_new_user(
                session, token=raw, password="a-long-password-1"
            )
            assert user.id is not None
            member = Actor.user(user.id, user.email)
        with db.session_scope() as session, pytest.raises(Forbidden):
            invites.create_invite(
                session, customer_id=cid, inviter=member, email="z@example.com", role="viewer"
            )
    with db.session_scope() as session, pytest.raises(ValidationFailed):
        invites.create_invite(
            session, customer_id=cid, inviter=actor, email="z@example.com", role="member"
        )
    with db.session_scope(readonly=True) as session:
        assert (
            session.execute(select(User).where(col(User.email) == "z@example.com")).first() is None
        )
        assert {i.email for i in invites.list_pending(session, cid)} == {
            "dev@example.com",
            "o@example.com",
            "ops@example.com",
        }
