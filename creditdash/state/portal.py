"""The signed-in customer's workspace: which one is selected, checked on every event.

Every handler asks _workspace(), which re-reads the user from the session cookie and their
membership from the database, so a stale or forged workspace id in the browser gets nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import customers
from creditdash.core import db
from creditdash.state.session import SessionState, SignedIn


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
            return None if self.user_email else rx.redirect("/")
        return found

    @rx.event
    async def pick_workspace(self, customer_id: str) -> EventSpec | None:
        self.workspace_id = customer_id
        found = await self._workspace()
        if found is None:
            return rx.redirect("/")
        return rx.call_script("window.location.reload()")
