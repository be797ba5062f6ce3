"""The invitation page's state: a new address signs up from the link, a wrong account is told
which address the invitation is for, and sign-in opened from an invitation returns to it."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

from reflex.istate.data import ReflexURL
from sqlalchemy.engine import Engine

from creditdash.accounts import invites, sessions
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.state.portal.invite import InviteState
from creditdash.state.portal.signin import SignInState
from tests.factories import signed_up
from tests.state.browser import connection, state


def at(cls: type, url: str, token: str = "") -> Any:
    sub = state(cls, token)
    sub.router = dataclasses.replace(connection(token), url=ReflexURL(url))
    return sub


def make_invite(email: str) -> tuple[str, str]:
    owner_id, cid = signed_up()
    with db.session_scope() as session:
        _row, raw = invites.create_invite(
            session,
            customer_id=cid,
            inviter=Actor.user(owner_id, "founder@example.com"),
            email=email,
            role="viewer",
        )
    return cid, raw


def test_new_address_creates_its_account_from_the_link(sqlite_engine: Engine) -> None:
    _cid, raw = make_invite("new@example.com")
    page = at(InviteState, f"http://localhost:3000/invite?token={raw}")
    asyncio.run(page.load())
    assert page.loaded and not page.problem and not page.has_account
    assert (page.invite_email, page.invite_role) == ("new@example.com", "Viewer")
    done = asyncio.run(
        page.create_account(
            {"password": "a-long-password-1", "confirm_password": "a-long-password-1"}
        )
    )
    assert page.error == "" and "/auth/session?code=" in str(done)


def test_a_different_signed_in_account_is_told_the_address(sqlite_engine: Engine) -> None:
    _cid, raw = make_invite("mate@example.com")
    other_id, _c = signed_up("other@example.com")
    with db.session_scope() as session:
        token = sessions.start_session(session, user_id=other_id, ttl=timedelta(hours=1))
    page = at(InviteState, f"http://localhost:3000/invite?token={raw}", token)
    asyncio.run(page.load())
    asyncio.run(page.accept())
    assert "mate@example.com" in page.error and "other@example.com" in page.error


def test_sign_in_from_an_invitation_returns_to_it(sqlite_engine: Engine) -> None:
    _cid, raw = make_invite("founder2@example.com")
    page = at(SignInState, f"http://localhost:3000/signin?invite={raw}")
    assert page._invite_page() == f"/invite?token={raw}"
    forged = at(SignInState, "http://localhost:3000/signin?invite=//evil.example.com")
    assert forged._invite_page() == ""
    with db.session_scope() as session:
        assert invites.view_invite(session, raw).usable
