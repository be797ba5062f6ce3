"""The states every page builds on, and the guards every handler that touches data runs first.

Who is signed in: every handler that shows or changes data asks SessionState, on the server.

The browser holds only a random session token, in an HttpOnly cookie that script cannot read
(set and cleared by web/auth.py). The browser sends it with the websocket
handshake; Reflex keeps that request's headers on the server (router.headers, never sent to the
page), and the user is looked up from the token's hash on each event, so sign-out and expiry
take effect at once.

Which workspace: PortalState._workspace() re-reads the user from the session cookie and their
membership from the database, so a stale or forged workspace id in the browser gets nothing.

The guards are decorators (admin_event, workspace_event) rather than two lines each handler
copies: a handler that forgot them was a privilege escalation nothing would catch. A decorated
handler's body takes the checked Actor or Workspace as its first argument; the browser never
sees that parameter (see _hide_guard_argument).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypedDict, TypeVar, overload

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import customers, roles, sessions
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.db import Session
from creditdash.core.errors import CreditdashError
from creditdash.routes import SIGN_IN_PATH, SIGN_OUT_PATH, handoff_url

SESSION_COOKIE = sessions.SESSION_COOKIE


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    email: str
    display_name: str
    is_platform_admin: bool


def _lookup(token: str) -> SignedIn | None:
    with db.session_scope(readonly=True) as session:
        user = sessions.user_for_token(session, token)
        if user is None or user.id is None:
            return None
        return SignedIn(user.id, user.email, user.display_name, user.is_platform_admin)


def _pending_email(token: str) -> str:
    with db.session_scope(readonly=True) as session:
        user = sessions.pending_user_for_token(session, token)
        return user.email if user is not None and user.must_change_password else ""


def _end(token: str) -> None:
    with db.session_scope() as session:
        sessions.end_session(session, token)


def _hand_off(token: str) -> str:
    with db.session_scope() as session:
        return sessions.hand_off(session, token)


async def cookie_then(token: str, next_page: str) -> EventSpec:
    """Leave this tab's state behind and have the browser trade a handoff code for the
    session's HttpOnly cookie, then open next_page."""
    code = await asyncio.to_thread(_hand_off, token)
    return fresh_start(handoff_url(code, next_page))


def fresh_start(path: str) -> EventSpec:
    """Navigate with a new client token: the server-side state of this tab (keys shown once,
    request details, billing data of the previous user) is left behind, never shown again."""
    return rx.call_script(
        f"window.sessionStorage.clear(); window.location.replace({json.dumps(path)})"
    )


class SessionState(rx.State):
    user_email: str = ""
    user_name: str = ""
    is_admin: bool = False

    def _session_token(self) -> str:
        """The session cookie as the browser sent it with this connection's handshake."""
        return sessions.token_from_cookie_header(self.router.headers.cookie)

    async def _signed_in(self) -> SignedIn | None:
        """The current user, checked against the database (never trusted from the browser)."""
        who = await asyncio.to_thread(_lookup, self._session_token())
        if who is None:
            self.user_email, self.user_name, self.is_admin = "", "", False
        else:
            self.user_email, self.user_name = who.email, who.display_name or who.email
            self.is_admin = who.is_platform_admin
        return who

    async def _pending(self) -> str:
        """The email of a user signed in with a one-time password they must still replace
        ("" otherwise). _signed_in() is None for them: every page and download refuses."""
        return await asyncio.to_thread(_pending_email, self._session_token())

    @rx.event
    async def sign_out(self) -> EventSpec:
        if token := self._session_token():
            await asyncio.to_thread(_end, token)
        self.user_email, self.user_name, self.is_admin = "", "", False
        # The response of this address clears the cookie (script cannot).
        return fresh_start(SIGN_OUT_PATH)


class WorkspaceOption(TypedDict):
    id: str
    name: str
    role: str


@dataclass(frozen=True)
class Workspace:
    user: SignedIn
    customer_id: str
    role: str


def _options(user_id: int) -> list[WorkspaceOption]:
    with db.session_scope(readonly=True) as session:
        return [
            WorkspaceOption(id=c.id, name=c.name, role=role)
            for c, role in customers.customers_of_user(session, user_id)
        ]


class PortalState(SessionState):
    workspace_id: str = ""
    workspace_name: str = ""
    workspace_role: str = ""
    workspaces: list[WorkspaceOption] = []
    no_workspace: bool = False
    # Set when the member's role refused the last action (workspace_event(permission=...)).
    role_refusal: str = ""

    async def _workspace(self) -> Workspace | None:
        who = await self._signed_in()
        if who is None:
            return None
        options = await asyncio.to_thread(_options, who.user_id)
        self.workspaces = options
        self.no_workspace = not options
        if not options:
            return None
        chosen = next((o for o in options if o["id"] == self.workspace_id), options[0])
        self.workspace_id, self.workspace_name = chosen["id"], chosen["name"]
        self.workspace_role = chosen["role"]
        return Workspace(who, chosen["id"], chosen["role"])

    async def _require(self) -> Workspace | EventSpec | None:
        """The workspace; a redirect to sign-in for visitors; None for a signed-in user who
        belongs to no workspace (the page shows that instead of its data)."""
        found = await self._workspace()
        if found is None:
            return None if self.user_email else rx.redirect(SIGN_IN_PATH)
        return found

    @rx.event
    async def pick_workspace(self, customer_id: str) -> EventSpec | None:
        self.workspace_id = customer_id
        found = await self._workspace()
        if found is None:
            return rx.redirect(SIGN_IN_PATH)
        return rx.call_script("window.location.reload()")


class AdminBase(SessionState):
    """The admin pages' states: every handler is an @admin_event, checked on the server."""

    admin_error: str = ""
    admin_notice: str = ""

    async def _admin(self) -> Actor | EventSpec:
        who = await self._signed_in()
        if who is not None and who.is_platform_admin:
            return Actor.user(who.user_id, who.email)
        self.admin_error = self.admin_notice = ""
        return rx.redirect(SIGN_IN_PATH if who is None else "/home")

    async def _run(self, work: Callable[[], object], done: str) -> None:
        """Run a service call off the event loop; its refusal becomes the page's error."""
        self.admin_error = self.admin_notice = ""
        try:
            await asyncio.to_thread(work)
        except CreditdashError as exc:
            self.admin_error = exc.message
            return
        self.admin_notice = done


def with_session(work: Callable[[Session], object]) -> Callable[[], object]:
    """`work` in a transaction of its own, as AdminBase._run() wants it (a thread, no args)."""

    def run() -> object:
        with db.session_scope() as session:
            return work(session)

    return run


# ------------------------------------------------------------------------------------ guards

P = ParamSpec("P")
AdminS = TypeVar("AdminS", bound=AdminBase)
PortalS = TypeVar("PortalS", bound=PortalState)
Outcome = EventSpec | None


def _hide_guard_argument(run: Callable[..., Any], body: Callable[..., Any]) -> None:
    """Make `run` look to Reflex like `body` without its guard argument (the second one).

    Reflex reads a handler's parameters with inspect.signature() (to build the event's
    arguments, check them against the trigger and name the payload) and their types with
    typing.get_type_hints() (to convert the payload). functools.wraps makes both see `body`;
    an explicit __signature__ and __annotations__ then drop the Actor or Workspace parameter,
    which the guard supplies and the browser must not be able to.
    """
    functools.update_wrapper(run, body)
    signature = inspect.signature(body)
    self_param, guard_param, *rest = signature.parameters.values()
    run.__signature__ = signature.replace(parameters=[self_param, *rest])  # type: ignore[attr-defined]
    run.__annotations__ = {k: v for k, v in body.__annotations__.items() if k != guard_param.name}


def admin_event(
    body: Callable[Concatenate[AdminS, Actor, P], Awaitable[Outcome]],
) -> Callable[Concatenate[AdminS, P], Coroutine[Any, Any, Outcome]]:
    """The handler runs only for a platform admin, checked on the server per event: anyone
    else gets _admin()'s redirect and the body never runs. The body gets the admin's Actor."""

    async def run(self: AdminS, /, *args: P.args, **kwargs: P.kwargs) -> Outcome:
        actor = await self._admin()
        if not isinstance(actor, Actor):
            return actor
        return await body(self, actor, *args, **kwargs)

    _hide_guard_argument(run, body)
    return run


WorkspaceBody = Callable[Concatenate[PortalS, Workspace, P], Awaitable[Outcome]]
WorkspaceHandler = Callable[Concatenate[PortalS, P], Coroutine[Any, Any, Outcome]]


@overload
def workspace_event(body: WorkspaceBody[PortalS, P]) -> WorkspaceHandler[PortalS, P]: ...


@overload
def workspace_event(
    *, clearing: tuple[str, ...] = (), permission: str = "workspace.read"
) -> Callable[[WorkspaceBody[PortalS, P]], WorkspaceHandler[PortalS, P]]: ...


def workspace_event(
    body: WorkspaceBody[PortalS, P] | None = None,
    *,
    clearing: tuple[str, ...] = (),
    permission: str = "workspace.read",
) -> (
    WorkspaceHandler[PortalS, P]
    | Callable[[WorkspaceBody[PortalS, P]], WorkspaceHandler[PortalS, P]]
):
    """The handler runs only for a member of the selected workspace (_require()): a visitor
    gets the redirect to sign-in, a user of no workspace gets None, and the body never runs.
    The body gets the Workspace. `clearing` names fields (messages, a key shown once) set back
    to their defaults before the check, so that a refused caller does not keep seeing them.
    `permission` (accounts/roles.py) is checked against the member's role as the database has
    it now: a role that does not allow it gets role_refusal set and the body never runs."""
    if permission not in roles.PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    def guard(body: WorkspaceBody[PortalS, P]) -> WorkspaceHandler[PortalS, P]:
        async def run(self: PortalS, /, *args: P.args, **kwargs: P.kwargs) -> Outcome:
            fields = type(self).__fields__
            for name in clearing:
                setattr(self, name, fields[name].default_value())
            self.role_refusal = ""
            where = await self._require()
            if not isinstance(where, Workspace):
                return where
            if not roles.allows(where.role, permission):
                self.role_refusal = roles.refusal(permission)
                return None
            return await body(self, where, *args, **kwargs)

        _hide_guard_argument(run, body)
        # Read by tests/state/test_handler_guards.py, which calls every handler as each role
        # that lacks this permission.
        run.__permission__ = permission  # type: ignore[attr-defined]
        return run

    return guard if body is None else guard(body)
