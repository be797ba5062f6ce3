"""Sign-in through the Reflex states as a browser drives them, and the HTTP responses that set
and clear the HttpOnly session cookie."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from creditdash.accounts import sessions, users
from creditdash.accounts.models import Membership
from creditdash.accounts.throttle import get_throttle
from creditdash.billing.onboarding import create_customer
from creditdash.core import db, settings
from creditdash.core.audit import Actor, AuditEntry
from creditdash.state.base import SESSION_COOKIE, SessionState
from creditdash.state.portal.account import FirstPasswordState
from creditdash.state.portal.keys import KeysState
from creditdash.state.portal.signin import SignInState
from creditdash.state.portal.team import TeamState
from creditdash.web.auth import session_cookie_routes
from tests.state.browser import state

GOOD = "correct horse battery"
ADDRESS = "203.0.113.7"


@pytest.fixture(autouse=True)
def fresh_throttle() -> Iterator[None]:
    get_throttle.cache_clear()
    yield
    get_throttle.cache_clear()


@pytest.fixture
def client(sqlite_engine: Engine) -> Iterator[TestClient]:
    with TestClient(Starlette(routes=session_cookie_routes())) as test_client:
        yield test_client


def _run(sub: Any, cls: type, handler: str, *args: object) -> Any:
    return asyncio.run(getattr(cls, handler).fn(sub, *args))


def _sign_in(email: str, password: str, address: str = ADDRESS) -> tuple[Any, Any]:
    sub = state(SignInState, address=address)
    return sub, _run(sub, SignInState, "sign_in", {"email": email, "password": password})


def _handoff(result: Any) -> tuple[str, str]:
    found = re.search(r"/auth/session\?code=([A-Za-z0-9_-]+)&next=([a-z/-]+)", str(result))
    assert found, result
    return found.group(1), found.group(2)


def _take(client: TestClient, code: str, next_page: str) -> Any:
    return client.get(f"/auth/session?code={code}&next={next_page}", follow_redirects=False)


def _redirect_to(result: Any) -> str | None:
    """The path of an rx.redirect (None for anything else)."""
    args = dict((name._js_expr, value) for name, value in getattr(result, "args", ()))
    path = args.get("path")
    return None if path is None else str(path._var_value)


def _owner() -> None:
    with db.session_scope() as session:
        users.create_user(session, email="ana@example.com", password=GOOD)


def test_sign_in_is_throttled_per_address_and_audited(sqlite_engine: Engine) -> None:
    _owner()
    for _ in range(5):
        sub, result = _sign_in("ana@example.com", "a wrong guess")
        assert result is None and sub.error == "Incorrect email or password."
    sub, result = _sign_in("ana@example.com", GOOD)
    assert result is None
    assert sub.error == "Too many failed sign-ins; try again in 1 minute."
    with db.session_scope(readonly=True) as session:
        entries = session.execute(select(AuditEntry)).scalars().all()
    assert [e.action for e in entries] == ["signin.failed"] * 5 + ["signin.throttled"]
    assert all(json.loads(e.after_json or "{}")["address"] == ADDRESS for e in entries)


def test_the_token_reaches_the_browser_only_as_an_http_only_cookie(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDITDASH_PUBLIC_URL", "https://credits.example.com")
    settings.reset_settings()
    _owner()
    sub, result = _sign_in("ana@example.com", GOOD)
    code, next_page = _handoff(result)
    assert next_page == "/home" and sub.error == ""
    # No state var (which the page could read) holds a token: no rx.Cookie any more.
    assert "session_token" not in SessionState.get_fields()
    with db.session_scope(readonly=True) as session:
        [ws] = session.execute(select(sessions.WebSession)).scalars().all()

    response = _take(client, code, next_page)
    assert response.status_code == 303 and response.headers["location"] == "/home"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert flag.lower() in cookie.lower(), cookie
    token = response.cookies[SESSION_COOKIE]
    with db.session_scope(readonly=True) as session:
        assert sessions.user_for_token(session, token) is not None
        [after] = session.execute(select(sessions.WebSession)).scalars().all()
    assert after.id == ws.id and after.token_hash != ws.token_hash  # replaced at the handoff
    # The code works once.
    again = _take(client, code, next_page)
    assert again.headers["location"] == "/" and "set-cookie" not in again.headers

    # The state finds the user from the handshake's cookie; signing out clears it.
    home = state(KeysState, token)
    assert _run(home, KeysState, "load") is None and home.user_email == "ana@example.com"
    out = state(SessionState, token)
    assert "/auth/sign-out" in str(_run(out, SessionState, "sign_out"))
    client.cookies.set(SESSION_COOKIE, token)
    cleared = client.get("/auth/sign-out", follow_redirects=False)
    assert cleared.headers["location"] == "/"
    assert 'creditdash_session="";' in cleared.headers["set-cookie"].replace("=;", '="";')
    assert "max-age=0" in cleared.headers["set-cookie"].lower()
    with db.session_scope(readonly=True) as session:
        assert sessions.user_for_token(session, token) is None


def test_plain_http_public_url_gets_no_secure_flag(client: TestClient) -> None:
    _owner()
    _sub, result = _sign_in("ana@example.com", GOOD)
    response = _take(client, *_handoff(result))
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "secure" not in response.headers["set-cookie"].lower()


def test_a_forged_next_page_is_not_followed(client: TestClient) -> None:
    _owner()
    _sub, result = _sign_in("ana@example.com", GOOD)
    code, _next = _handoff(result)
    response = _take(client, code, "//evil.example/")
    assert response.headers["location"] == "/"


def test_a_handoff_from_another_site_is_refused(client: TestClient) -> None:
    _owner()
    _sub, result = _sign_in("ana@example.com", GOOD)
    code, next_page = _handoff(result)
    response = client.get(
        f"/auth/session?code={code}&next={next_page}",
        headers={"sec-fetch-site": "cross-site"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/" and "set-cookie" not in response.headers
    assert _take(client, code, next_page).cookies[SESSION_COOKIE]  # not used up by that


def test_an_invited_user_must_choose_a_password_before_anything(client: TestClient) -> None:
    with db.session_scope() as session:
        owner = users.create_user(session, email="owner@example.com", password=GOOD)
        customer = create_customer(
            session,
            name="Acme",
            email="acme@example.com",
            actor=Actor(label="test"),
            owner_password=None,
        )
        session.add(Membership(customer_id=customer.id, user_id=owner.id, role="owner"))
        mate = users.create_user(session, email="mate@example.com", password=None)
        assert mate.id is not None
        session.add(Membership(customer_id=customer.id, user_id=mate.id, role="developer"))
        session.flush()
        temporary = users.issue_one_time_password(session, user_id=mate.id)
    assert temporary
    _sub, result = _sign_in("mate@example.com", temporary)
    code, next_page = _handoff(result)
    assert next_page == "/change-password"
    token = _take(client, code, next_page).cookies[SESSION_COOKIE]

    # Every portal page refuses; the sign-in page and the form send the user to the form.
    keys = state(KeysState, token)
    assert _redirect_to(_run(keys, KeysState, "load")) == "/signin" and keys.user_email == ""
    team = state(TeamState, token)
    refused = _run(team, TeamState, "invite", {"email": "x@example.com", "role": "viewer"})
    assert _redirect_to(refused) == "/signin" and team.team_notice == ""
    with db.session_scope(readonly=True) as session:
        assert users.get_user_by_email(session, "x@example.com") is None
    signin = state(SignInState, token)
    assert _redirect_to(_run(signin, SignInState, "redirect_if_signed_in")) == "/change-password"
    form = state(FirstPasswordState, token)
    assert _run(form, FirstPasswordState, "load") is None
    assert form.pending_email == "mate@example.com"

    done = _run(
        form,
        FirstPasswordState,
        "set_first_password",
        {
            "current_password": temporary,
            "new_password": "my own password 1",
            "confirm_password": "my own password 1",
        },
    )
    code, next_page = _handoff(done)
    assert next_page == "/home" and form.first_password_error == ""
    fresh = _take(client, code, next_page).cookies[SESSION_COOKIE]
    keys = state(KeysState, fresh)
    assert _run(keys, KeysState, "load") is None and keys.user_email == "mate@example.com"
    with db.session_scope(readonly=True) as session:
        assert sessions.user_for_token(session, token) is None  # the one-time session ended
    sub, result = _sign_in("mate@example.com", temporary, address="192.0.2.44")
    assert result is None and sub.error == "Incorrect email or password."
