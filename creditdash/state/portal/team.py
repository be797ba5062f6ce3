"""Team: the workspace's members and invitations.

What a row offers (a role selector, remove, transfer) is computed here from the viewer's role
so the page only hides what the services would refuse anyway; every handler still declares its
permission and the services check the role again under their lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.accounts import invites, members, roles
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.errors import CreditdashError
from creditdash.core.timeutil import utcnow
from creditdash.state.base import PortalState, Workspace, fresh_start, workspace_event


class MemberRow(TypedDict):
    user_id: str
    email: str
    name: str
    role: str
    joined: str
    is_me: bool
    # What the viewer may do to this member.
    can_change: bool
    can_remove: bool
    can_transfer: bool
    # The roles the viewer may give this member.
    choices: list[str]


class InviteRow(TypedDict):
    id: str
    email: str
    role: str
    expires: str
    expired: bool


def _choices(viewer_role: str, target_role: str) -> list[str]:
    if viewer_role == "owner":
        return list(roles.ROLES)
    if roles.allows(viewer_role, "members.manage") and target_role != "owner":
        return [r for r in roles.ROLES if r != "owner"]
    return []


def _rows(where: Workspace) -> tuple[list[MemberRow], list[InviteRow]]:
    manage = roles.allows(where.role, "members.manage")
    with db.session_scope(readonly=True) as session:
        listed = members.list_members(session, where.customer_id)
        pending = invites.list_pending(session, where.customer_id) if manage else []
    now = utcnow()
    rows = []
    for m in listed:
        choices = _choices(where.role, m.role)
        mine = m.user_id == where.user.user_id
        rows.append(
            MemberRow(
                user_id=str(m.user_id),
                email=m.email,
                name=m.name,
                role=m.role,
                joined=f"{m.joined:%Y-%m-%d}",
                is_me=mine,
                can_change=bool(choices) and not mine,
                can_remove=bool(choices) and not mine,
                can_transfer=where.role == "owner" and not mine,
                choices=choices,
            )
        )
    return rows, [
        InviteRow(
            id=i.id,
            email=i.email,
            role=i.role,
            expires=f"{i.expires_at:%Y-%m-%d %H:%M} UTC",
            expired=i.expires_at <= now,
        )
        for i in pending
    ]


def _actor(where: Workspace) -> Actor:
    return Actor.user(where.user.user_id, where.user.email)


def _user_id(text: str) -> int:
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def where_name(state: PortalState) -> str:
    return state.workspace_name or "this workspace"


class TeamState(PortalState):
    team: list[MemberRow] = []
    pending_invites: list[InviteRow] = []
    can_invite: bool = False
    invite_roles: list[str] = []
    team_error: str = ""
    team_notice: str = ""
    # The removal waiting for its confirmation ("" when none) and its member (server only).
    confirm_text: str = ""
    _pending_member: str = ""

    async def _reload(self, where: Workspace) -> None:
        self.team, self.pending_invites = await asyncio.to_thread(_rows, where)
        self.can_invite = roles.allows(where.role, "members.manage")
        self.invite_roles = [
            r for r in roles.ROLES if r != "owner" or roles.allows(where.role, "owners.manage")
        ]

    async def _do(self, where: Workspace, work: object, done: str) -> None:
        """Run a service call in its own transaction; a refusal becomes the page's error."""

        def run() -> None:
            with db.session_scope() as session:
                work(session)  # type: ignore[operator]

        try:
            await asyncio.to_thread(run)
        except CreditdashError as exc:
            self.team_error = exc.message
        else:
            self.team_notice = done
        await self._reload(where)

    @rx.event
    @workspace_event(clearing=("team_error", "team_notice"), permission="members.read")
    async def load(self, where: Workspace) -> EventSpec | None:
        await self._reload(where)
        return None

    async def _on_member(
        self,
        where: Workspace,
        user_id: str,
        action: Callable[..., object],
        done: str,
        **fields: object,
    ) -> None:
        """Run a members service (accounts/members.py: session, customer_id, actor,
        target_user_id, ...) on the member the page named, then reload."""
        try:
            target = _user_id(user_id)
        except ValueError:
            self.team_error = "That member was not found."
            return
        await self._do(
            where,
            lambda s: action(
                s,
                customer_id=where.customer_id,
                actor=_actor(where),
                target_user_id=target,
                **fields,
            ),
            done,
        )

    @rx.event
    @workspace_event(clearing=("team_error", "team_notice"), permission="members.manage")
    async def change_role(self, where: Workspace, user_id: str, role: str) -> EventSpec | None:
        await self._on_member(
            where, user_id, members.change_role, f"Role changed to {role}.", role=role
        )
        return None

    @rx.event
    @workspace_event(clearing=("team_error", "team_notice"), permission="members.manage")
    async def remove(self, where: Workspace, user_id: str) -> EventSpec | None:
        """Remove at once (no confirmation; ask_remove asks first)."""
        await self._remove(where, user_id)
        return None

    @rx.event
    @workspace_event(clearing=("team_error", "team_notice"), permission="members.manage")
    async def ask_remove(self, where: Workspace, user_id: str) -> EventSpec | None:
        """Name the member and what removing them does in a confirmation; writes nothing."""
        row = next((m for m in self.team if m["user_id"] == user_id and m["can_remove"]), None)
        if row is None:
            self.team_error = "That member was not found."
            return None
        self._pending_member = user_id
        self.confirm_text = (
            f"Remove {row['email']} from {where_name(self)}? They lose access at once; "
            "API keys they made keep working until revoked."
        )
        return None

    @rx.event
    @workspace_event(clearing=("team_error", "team_notice"), permission="members.manage")
    async def confirm_remove(self, where: Workspace) -> EventSpec | None:
        user_id, self._pending_member, self.confirm_text = self._pending_member, "", ""
        if user_id:
            await self._remove(where, user_id)
        return None

    @rx.event
    def cancel_confirm(self) -> None:
        self._pending_member, self.confirm_text = "", ""

    async def _remove(self, where: Workspace, user_id: str) -> None:
        email = next((m["email"] for m in self.team if m["user_id"] == user_id), "")
        done = f"{email} removed from {where_name(self)}." if email else "Member removed."
        await self._on_member(where, user_id, members.remove_member, done)

    @rx.event
    @workspace_event(clearing=("team_error", "team_notice"), permission="owners.manage")
    async def transfer(self, where: Workspace, user_id: str) -> EventSpec | None:
        await self._on_member(
            where,
            user_id,
            members.transfer_ownership,
            "Ownership transferred: you are now an admin.",
        )
        return None

    @rx.event
    @workspace_event(clearing=("team_error", "team_notice"))
    async def leave(self, where: Workspace) -> EventSpec | None:
        await self._do(
            where,
            lambda s: members.leave_workspace(
                s, customer_id=where.customer_id, actor=_actor(where)
            ),
            "You left the workspace.",
        )
        if self.team_error:
            return None
        # Start again on whatever workspace is left (or none).
        return fresh_start("/home")

    @rx.event
    @workspace_event(clearing=("team_error", "team_notice"), permission="members.manage")
    async def invite(self, where: Workspace, form: dict[str, str]) -> EventSpec | None:
        email = str(form.get("email") or "")
        role = str(form.get("role") or "developer")
        await self._do(
            where,
            lambda s: invites.create_invite(
                s, customer_id=where.customer_id, inviter=_actor(where), email=email, role=role
            ),
            f"Invitation emailed to {email.strip().lower()}.",
        )
        return None

    @rx.event
    @workspace_event(clearing=("team_error", "team_notice"), permission="members.manage")
    async def revoke_invite(self, where: Workspace, invite_id: str) -> EventSpec | None:
        await self._do(
            where,
            lambda s: invites.revoke_invite(
                s, customer_id=where.customer_id, actor=_actor(where), invite_id=invite_id
            ),
            "Invitation withdrawn.",
        )
        return None

    @rx.event
    @workspace_event(clearing=("team_error", "team_notice"), permission="members.manage")
    async def resend_invite(self, where: Workspace, invite_id: str) -> EventSpec | None:
        await self._do(
            where,
            lambda s: invites.resend_invite(
                s, customer_id=where.customer_id, actor=_actor(where), invite_id=invite_id
            ),
            "Invitation sent again; the earlier link no longer works.",
        )
        return None
