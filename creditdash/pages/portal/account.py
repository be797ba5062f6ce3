"""Account: password change (teammates are on the Team page)."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import (
    brand,
    error_callout,
    field,
    page_layout,
)
from creditdash.state.base import SessionState
from creditdash.state.portal.account import AccountState, FirstPasswordState


def first_password_page() -> rx.Component:
    """After signing in with a one-time password: the user's own password, before anything."""
    return rx.center(
        rx.card(
            rx.form(
                rx.vstack(
                    brand(),
                    rx.heading("Choose your password", size="5"),
                    rx.text(
                        FirstPasswordState.pending_email,
                        " signed in with a one-time password. Choose your own to continue.",
                        size="2",
                        color_scheme="gray",
                    ),
                    field(
                        "One-time password",
                        rx.input(
                            name="current_password",
                            type="password",
                            required=True,
                            auto_complete="current-password",
                            id="current_password",
                        ),
                    ),
                    field(
                        "New password (10+ characters)",
                        rx.input(
                            name="new_password",
                            type="password",
                            required=True,
                            auto_complete="new-password",
                            id="new_password",
                        ),
                    ),
                    field(
                        "Repeat the new password",
                        rx.input(
                            name="confirm_password",
                            type="password",
                            required=True,
                            auto_complete="new-password",
                            id="confirm_password",
                        ),
                    ),
                    error_callout(FirstPasswordState.first_password_error),
                    rx.button("Set password", type="submit", id="set-password"),
                    rx.button(
                        "Sign out", type="button", variant="ghost", on_click=SessionState.sign_out
                    ),
                    spacing="3",
                    width="100%",
                ),
                on_submit=FirstPasswordState.set_first_password,
                width="100%",
            ),
            width="100%",
            max_width="26em",
            padding="2em",
        ),
        min_height="100vh",
        padding="1em",
    )


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
                        "New password (10+ characters)",
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
    )
