"""Each role's allowed and refused actions, through the services the portal calls."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from creditdash.accounts import api_keys, invites, members, roles
from creditdash.accounts.models import MEMBER_ROLES, Membership
from creditdash.accounts.users import create_user
from creditdash.billing.invoicing import profiles
from creditdash.billing.payments import packages, placing
from creditdash.core import db
from creditdash.core.audit import CLI, Actor
from creditdash.core.errors import Forbidden
from tests.factories import signed_up

Action = Callable[[Session, str, Actor], object]


def _key(session: Session, cid: str, actor: Actor) -> object:
    return api_keys.create_api_key(
        session, customer_id=cid, name="k", created_by_user_id=actor.user_id
    )


def _invite(session: Session, cid: str, actor: Actor) -> object:
    return invites.create_invite(
        session, customer_id=cid, inviter=actor, email="new@example.com", role="viewer"
    )


def _role_change(session: Session, cid: str, actor: Actor) -> object:
    target = members.user_id_by_email(session, customer_id=cid, email="target@example.com")
    return members.change_role(
        session, customer_id=cid, actor=actor, target_user_id=target, role="billing"
    )


def _profile(session: Session, cid: str, actor: Actor) -> object:
    data = profiles.ProfileInput(legal_name="Acme GmbH", country="DE")
    return profiles.save_billing_profile(session, customer_id=cid, data=data, actor=actor)


def _order(session: Session, cid: str, actor: Actor) -> object:
    return placing.place_order(
        session, customer_id=cid, package_name="Starter", actor=actor, accept_terms=True
    )


ACTIONS: dict[str, tuple[str, Action]] = {
    "create key": ("keys.manage", _key),
    "invite": ("members.manage", _invite),
    "change a role": ("members.manage", _role_change),
    "save billing profile": ("billing.manage", _profile),
    "place an order": ("billing.manage", _order),
}
EXPECTED = {
    "owner": set(ACTIONS),
    "admin": set(ACTIONS),
    "developer": {"create key"},
    "billing": {"save billing profile", "place an order"},
    "viewer": set(),
}


def test_the_expected_table_is_the_permission_table() -> None:
    assert roles.ROLES == MEMBER_ROLES
    for role, allowed in EXPECTED.items():
        derived = {name for name, (perm, _a) in ACTIONS.items() if roles.allows(role, perm)}
        assert derived == allowed, role


@pytest.mark.parametrize("role", MEMBER_ROLES)
def test_each_role_through_the_services(engine: Engine, role: str) -> None:
    _owner_id, cid = signed_up()
    with db.session_scope() as session:
        packages.seed_demo_packages(session, actor=CLI)
        profiles.seed_demo_seller(session, actor=CLI)
        actor_user = create_user(session, email="actor@example.com", password="a-long-password-1")
        target = create_user(session, email="target@example.com", password="a-long-password-1")
        assert actor_user.id is not None and target.id is not None
        session.add(Membership(customer_id=cid, user_id=actor_user.id, role=role))
        session.add(Membership(customer_id=cid, user_id=target.id, role="developer"))
        actor = Actor.user(actor_user.id, actor_user.email)
    for name, (_perm, action) in ACTIONS.items():
        if name in EXPECTED[role]:
            with db.session_scope() as session:
                action(session, cid, actor)
        else:
            with db.session_scope() as session, pytest.raises(Forbidden, match="role"):
                action(session, cid, actor)


def test_a_stranger_and_the_operator(engine: Engine) -> None:
    _owner_id, cid = signed_up()
    stranger_id, _other = signed_up("stranger@example.com")
    stranger = Actor.user(stranger_id, "stranger@example.com")
    with db.session_scope() as session:
        packages.seed_demo_packages(session, actor=CLI)
        profiles.seed_demo_seller(session, actor=CLI)
        target = create_user(session, email="target@example.com", password="a-long-password-1")
        assert target.id is not None
        session.add(Membership(customer_id=cid, user_id=target.id, role="developer"))
    for _perm, action in ACTIONS.values():
        with db.session_scope() as session, pytest.raises(Forbidden):
            action(session, cid, stranger)
    # The operator (CLI) acts for every workspace.
    for name, (_perm, action) in ACTIONS.items():
        if name != "create key":  # the CLI makes keys with no user: created_by_user_id=None
            with db.session_scope() as session:
                action(session, cid, CLI)
