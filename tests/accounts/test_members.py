"""Members: role changes, removal, leaving, transfer, and the last-owner rule under concurrency."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from creditdash.accounts import members
from creditdash.accounts.models import Membership
from creditdash.accounts.users import create_user
from creditdash.core import db
from creditdash.core.audit import CLI, Actor, AuditEntry
from creditdash.core.errors import Conflict, CreditdashError, Forbidden, NotFound, ValidationFailed
from tests.factories import signed_up


def add_member(customer_id: str, email: str, role: str) -> Actor:
    with db.session_scope() as session:
        user = create_user(session, email=email, password="a-long-password-1")
        assert user.id is not None
        session.add(Membership(customer_id=customer_id, user_id=user.id, role=role))
        return Actor.user(user.id, email)


def role_map(customer_id: str) -> dict[str, str]:
    with db.session_scope(readonly=True) as session:
        return {m.email: m.role for m in members.list_members(session, customer_id)}


def owners(customer_id: str) -> int:
    with db.session_scope(readonly=True) as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(Membership)
                .where(col(Membership.customer_id) == customer_id, col(Membership.role) == "owner")
            ).scalar_one()
        )


def test_list_members_owner_first(engine: Engine) -> None:
    _owner_id, cid = signed_up()
    add_member(cid, "dev@example.com", "developer")
    with db.session_scope(readonly=True) as session:
        listed = members.list_members(session, cid)
    assert [(m.email, m.role) for m in listed] == [
        ("founder@example.com", "owner"),
        ("dev@example.com", "developer"),
    ]
    assert listed[0].name == "Ada" and listed[0].joined is not None


def test_admin_changes_non_owner_roles_but_not_owners(engine: Engine) -> None:
    owner_id, cid = signed_up()
    admin = add_member(cid, "admin@example.com", "admin")
    dev = add_member(cid, "dev@example.com", "developer")
    assert dev.user_id is not None
    with db.session_scope() as session:
        members.change_role(
            session, customer_id=cid, actor=admin, target_user_id=dev.user_id, role="billing"
        )
    assert role_map(cid)["dev@example.com"] == "billing"
    for target, role in ((owner_id, "admin"), (dev.user_id, "owner")):
        with db.session_scope() as session, pytest.raises(Forbidden, match="owners"):
            members.change_role(
                session, customer_id=cid, actor=admin, target_user_id=target, role=role
            )
    with db.session_scope() as session, pytest.raises(Forbidden):
        members.remove_member(session, customer_id=cid, actor=admin, target_user_id=owner_id)
    assert role_map(cid) == {
        "founder@example.com": "owner",
        "admin@example.com": "admin",
        "dev@example.com": "billing",
    }
    with db.session_scope(readonly=True) as session:
        actions = session.execute(select(col(AuditEntry.action))).scalars().all()
    assert actions.count("member.role") == 1


def test_roles_without_members_manage_are_refused(engine: Engine) -> None:
    owner_id, cid = signed_up()
    for role in ("developer", "billing", "viewer"):
        actor = add_member(cid, f"{role}@example.com", role)
        with db.session_scope() as session, pytest.raises(Forbidden):
            members.change_role(
                session, customer_id=cid, actor=actor, target_user_id=owner_id, role="viewer"
            )
        with db.session_scope() as session, pytest.raises(Forbidden):
            members.remove_member(session, customer_id=cid, actor=actor, target_user_id=owner_id)
    stranger_id, _other = signed_up("stranger@example.com")
    with db.session_scope() as session, pytest.raises(Forbidden):
        members.change_role(
            session,
            customer_id=cid,
            actor=Actor.user(stranger_id, "stranger@example.com"),
            target_user_id=owner_id,
            role="viewer",
        )
    assert role_map(cid)["founder@example.com"] == "owner"


def test_last_owner_cannot_be_demoted_removed_or_leave(engine: Engine) -> None:
    owner_id, cid = signed_up()
    owner = Actor.user(owner_id, "founder@example.com")
    add_member(cid, "dev@example.com", "developer")
    for attempt in (
        lambda s: members.change_role(
            s, customer_id=cid, actor=owner, target_user_id=owner_id, role="admin"
        ),
        lambda s: members.leave_workspace(s, customer_id=cid, actor=owner),
        # The operator bypasses role checks, never the last-owner rule.
        lambda s: members.change_role(
            s, customer_id=cid, actor=CLI, target_user_id=owner_id, role="viewer"
        ),
        lambda s: members.remove_member(s, customer_id=cid, actor=CLI, target_user_id=owner_id),
    ):
        with db.session_scope() as session, pytest.raises(Conflict, match="at least one owner"):
            attempt(session)
    assert owners(cid) == 1


def test_bad_input_changes_nothing(engine: Engine) -> None:
    owner_id, cid = signed_up()
    owner = Actor.user(owner_id, "founder@example.com")
    with db.session_scope() as session, pytest.raises(ValidationFailed):
        members.change_role(
            session, customer_id=cid, actor=owner, target_user_id=owner_id, role="member"
        )
    with db.session_scope() as session, pytest.raises(NotFound):
        members.change_role(
            session, customer_id=cid, actor=owner, target_user_id=99999, role="viewer"
        )
    with db.session_scope() as session, pytest.raises(ValidationFailed, match="leave"):
        members.remove_member(session, customer_id=cid, actor=owner, target_user_id=owner_id)
    assert role_map(cid) == {"founder@example.com": "owner"}


def test_leave_and_remove(engine: Engine) -> None:
    owner_id, cid = signed_up()
    owner = Actor.user(owner_id, "founder@example.com")
    dev = add_member(cid, "dev@example.com", "developer")
    viewer = add_member(cid, "viewer@example.com", "viewer")
    assert viewer.user_id is not None
    with db.session_scope() as session:
        members.leave_workspace(session, customer_id=cid, actor=dev)
        members.remove_member(session, customer_id=cid, actor=owner, target_user_id=viewer.user_id)
    assert role_map(cid) == {"founder@example.com": "owner"}


def test_transfer_ownership(engine: Engine) -> None:
    owner_id, cid = signed_up()
    owner = Actor.user(owner_id, "founder@example.com")
    dev = add_member(cid, "dev@example.com", "developer")
    assert dev.user_id is not None
    with db.session_scope() as session, pytest.raises(Forbidden):
        members.transfer_ownership(session, customer_id=cid, actor=dev, target_user_id=owner_id)
    with db.session_scope() as session:
        members.transfer_ownership(
            session, customer_id=cid, actor=owner, target_user_id=dev.user_id
        )
    assert role_map(cid) == {"dev@example.com": "owner", "founder@example.com": "admin"}
    # The new owner may now step down only after making someone else an owner again.
    with db.session_scope() as session, pytest.raises(Conflict):
        members.leave_workspace(session, customer_id=cid, actor=dev)


def test_two_owners_demoting_each_other_at_once_leave_one_owner(engine: Engine) -> None:
    a_id, cid = signed_up()
    a = Actor.user(a_id, "founder@example.com")
    b = add_member(cid, "second@example.com", "owner")
    assert b.user_id is not None
    assert owners(cid) == 2
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    # PostgreSQL: both transactions are open and have seen two owners before either writes.
    # SQLite admits one writer transaction at a time in a process, so there they meet just
    # before starting theirs.
    inside = engine.dialect.name == "postgresql"

    def demote(actor: Actor, target: int) -> None:
        try:
            if not inside:
                barrier.wait(timeout=10)
            with db.session_scope() as session:
                if inside:
                    assert len(members.list_members(session, cid)) == 2
                    barrier.wait(timeout=10)
                members.change_role(
                    session, customer_id=cid, actor=actor, target_user_id=target, role="admin"
                )
            outcomes.append("ok")
        except CreditdashError as exc:
            outcomes.append(type(exc).__name__)

    threads = [
        threading.Thread(target=demote, args=(a, b.user_id)),
        threading.Thread(target=demote, args=(b, a_id)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["Forbidden", "ok"], outcomes
    assert owners(cid) == 1
