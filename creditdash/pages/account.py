"""Account: password change and teammates."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import error_callout, field, notice_callout, page_layout
from creditdash.state.account import AccountState


def account_page() -> rx.Component:
    return page_layout(
        rx.heading("Account", size="7"),
        rx.card(
            rx.form(
                rx.vstack(
                    rx.heading("Change password", size="5"),
                    field(
                        "Current password",
                        rx.input(name="current_password", type="password", required=True),
                    ),
                    field(
                        "New password (12+ characters)",
                        rx.input(name="new_password", type="password", required=True),
                    ),
                    field(
                        "Repeat the new password",
                        rx.input(name="confirm_password", type="password", required=True),
                    ),
                    error_callout(AccountState.password_error),
                    rx.button("Change password", type="submit"),
                    rx.text(
                        "You will be signed out everywhere and sign in again.",
                        size="1",
                        color_scheme="gray",
                    ),
                    spacing="3",
                    max_width="26em",
                ),
                on_submit=AccountState.change_password,
            ),
            width="100%",
        ),
        rx.card(
            rx.form(
                rx.vstack(
                    rx.heading("Invite a teammate", size="5"),
                    rx.text(
                        "They join ",
                        AccountState.workspace_name,
                        " and see its balance, keys, usage and invoices.",
                        size="2",
                        color_scheme="gray",
                    ),
                    rx.flex(
                        field("Email", rx.input(name="email", type="email", required=True)),
                        field(
                            "Role",
                            rx.select(["member", "admin"], name="role", default_value="member"),
                        ),
                        spacing="3",
                        wrap="wrap",
                        width="100%",
                    ),
                    error_callout(AccountState.invite_error),
                    notice_callout(AccountState.invite_notice),
                    rx.cond(
                        AccountState.invite_password != "",
                        rx.callout(
                            rx.text(
                                "One-time password for the new user (shown once; they "
                                "should change it after signing in): ",
                                rx.code(AccountState.invite_password),
                            ),
                            icon="key-round",
                            color_scheme="amber",
                        ),
                    ),
                    rx.button("Invite", type="submit"),
                    spacing="3",
                    width="100%",
                ),
                on_submit=AccountState.invite,
                reset_on_submit=True,
            ),
            width="100%",
        ),
    )
