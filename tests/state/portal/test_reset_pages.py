"""The forgot/reset pages' states: one answer for every address; the token read from the URL."""

from __future__ import annotations

import asyncio
from typing import Any

from reflex.istate.data import RouterData
from reflex.state import State
from sqlalchemy.engine import Engine
from sqlmodel import select

from creditdash.accounts import users
from creditdash.core import db
from creditdash.core.outbox import OutboxMail
from creditdash.routes import RESET_DONE_PATH
from creditdash.state.portal.reset import SENT, ForgotPasswordState, ResetPasswordState
from tests.factories import signed_up


def _state(cls: type, as_path: str = "/") -> Any:
    root = State(_reflex_internal_init=True)  # type: ignore[call-arg]
    sub = root.get_substate(cls.get_full_name().split(".")[1:])
    sub.router = RouterData.from_router_data(
        {"headers": {"origin": "http://localhost:3000"}, "asPath": as_path}
    )
    return sub


def test_forgot_then_reset_through_the_states(sqlite_engine: Engine) -> None:
    signed_up("ada@example.com")
    for address in ("nobody@example.com", "ada@example.com", "not an address"):
        forgot = _state(ForgotPasswordState)
        asyncio.run(forgot.request_link({"email": address}))
        assert forgot.notice == SENT
    with db.session_scope(readonly=True) as session:
        [row] = session.exec(select(OutboxMail)).all()
    token = row.body_text.split("token=")[1].split()[0]

    page = _state(ResetPasswordState, f"/reset-password?token={token}")
    asyncio.run(page.set_new_password({"password": "brand-new-pass-7", "confirm": "other"}))
    assert page.error == "The two passwords differ."
    done = asyncio.run(
        page.set_new_password({"password": "brand-new-pass-7", "confirm": "brand-new-pass-7"})
    )
    assert page.error == "" and RESET_DONE_PATH in str(done)
    asyncio.run(
        page.set_new_password({"password": "brand-new-pass-8", "confirm": "brand-new-pass-8"})
    )
    assert "invalid, used or expired" in page.error
    with db.session_scope(readonly=True) as session:
        users.authenticate(session, email="ada@example.com", password="brand-new-pass-7")
