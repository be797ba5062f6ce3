"""Team: members with their roles, pending invitations, and the invite form."""

from __future__ import annotations

import reflex as rx

from creditdash.components.confirm import confirm_dialog
from creditdash.components.layout import error_callout, field, notice_callout, page_layout
from creditdash.components.tables import table
from creditdash.state.portal.team import InviteRow, MemberRow, TeamState


def member_row(row: MemberRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row["email"], weight="medium"), rx.text(row["name"], size="1")),
        rx.table.cell(
            rx.cond(
                row["can_change"],
                rx.select(
                    row["choices"],
                    value=row["role"],
                    on_change=lambda role: TeamState.change_role(row["user_id"], role),
                    size="1",
                ),
                rx.badge(row["role"]),
            )
        ),
        rx.table.cell(row["joined"]),
        rx.table.cell(
            rx.flex(
                rx.cond(
                    row["can_transfer"],
                    rx.button(
                        "Make owner, step down",
                        size="1",
                        variant="soft",
                        on_click=TeamState.transfer(row["user_id"]),
                    ),
                ),
                rx.cond(
                    row["can_remove"],
                    rx.button(
                        "Remove",
                        size="1",
                        color_scheme="red",
                        variant="soft",
                        on_click=TeamState.ask_remove(row["user_id"]),
                    ),
                ),
                rx.cond(
                    row["is_me"],
                    rx.button("Leave", size="1", variant="soft", on_click=TeamState.leave),
                ),
                spacing="2",
            )
        ),
    )


def invite_row(row: InviteRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["email"]),
        rx.table.cell(rx.badge(row["role"])),
        rx.table.cell(rx.cond(row["expired"], rx.text("expired", color="red"), row["expires"])),
        rx.table.cell(
            rx.flex(
                rx.button(
                    "Resend", size="1", variant="soft", on_click=TeamState.resend_invite(row["id"])
                ),
                rx.button(
                    "Revoke",
                    size="1",
                    color_scheme="red",
                    variant="soft",
                    on_click=TeamState.revoke_invite(row["id"]),
                ),
                spacing="2",
            )
        ),
    )


def invite_form() -> rx.Component:
    return rx.card(
        rx.form(
            rx.vstack(
                rx.heading("Invite a teammate", size="5"),
                rx.text(
                    "They get an email with a link that works once; an address without an "
                    "account creates one from it.",
                    size="2",
                    color_scheme="gray",
                ),
                rx.flex(
                    field(
                        "Email",
                        rx.input(name="email", type="email", required=True, id="invite-email"),
                    ),
                    field(
                        "Role",
                        rx.select(
                            TeamState.invite_roles,
                            name="role",
                            default_value="developer",
                            id="invite-role",
                        ),
                    ),
                    spacing="3",
                    wrap="wrap",
                    width="100%",
                ),
                rx.button("Invite", type="submit", id="invite-submit"),
                spacing="3",
                width="100%",
            ),
            on_submit=TeamState.invite,
            reset_on_submit=True,
        ),
        width="100%",
    )


def team_page() -> rx.Component:
    return page_layout(
        rx.heading("Team", size="7"),
        error_callout(TeamState.team_error),
        notice_callout(TeamState.team_notice),
        confirm_dialog(
            title="Remove this member?",
            text=TeamState.confirm_text,
            action="Remove member",
            on_confirm=TeamState.confirm_remove,
            on_cancel=TeamState.cancel_confirm,
            confirm_id="confirm-remove",
        ),
        rx.card(
            table(("Member", "Role", "Joined", ""), rx.foreach(TeamState.team, member_row)),
            width="100%",
        ),
        rx.cond(
            TeamState.can_invite,
            rx.fragment(
                rx.cond(
                    TeamState.pending_invites.length() > 0,
                    rx.card(
                        rx.heading("Pending invitations", size="4"),
                        table(
                            ("Email", "Role", "Expires", ""),
                            rx.foreach(TeamState.pending_invites, invite_row),
                        ),
                        width="100%",
                    ),
                ),
                invite_form(),
            ),
        ),
    )
