"""Forgot your password? Ask for a link by email; the link's page sets a new one."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import brand
from creditdash.routes import SIGN_IN_PATH
from creditdash.state.portal.reset import ForgotPasswordState, ResetPasswordState


def _card(*children: rx.Component) -> rx.Component:
    return rx.center(
        rx.card(
            rx.vstack(brand(), *children, spacing="4", width="100%"),
            width="100%",
            max_width="24em",
            padding="2em",
        ),
        min_height="100vh",
        padding="1em",
        background=rx.color("gray", 2),
    )


def _field(label: str, name: str, kind: str, complete: str) -> list[rx.Component]:
    return [
        rx.text(label, as_="label", size="2", weight="medium"),
        rx.input(
            name=name, type=kind, required=True, width="100%", auto_complete=complete, id=name
        ),
    ]


def forgot_password_page() -> rx.Component:
    return _card(
        rx.text("Reset your password", size="3", color_scheme="gray"),
        rx.form(
            rx.vstack(
                *_field("Email", "email", "email", "username"),
                rx.cond(
                    ForgotPasswordState.notice != "",
                    rx.callout(ForgotPasswordState.notice, icon="mail", width="100%"),
                ),
                rx.button("Email me a link", type="submit", width="100%", size="3"),
                spacing="3",
                width="100%",
            ),
            on_submit=ForgotPasswordState.request_link,
            width="100%",
        ),
        rx.link("Back to sign-in", href=SIGN_IN_PATH, size="2"),
    )


def reset_password_page() -> rx.Component:
    return _card(
        rx.text("Choose a new password", size="3", color_scheme="gray"),
        rx.form(
            rx.vstack(
                *_field("New password", "password", "password", "new-password"),
                *_field("Repeat it", "confirm", "password", "new-password"),
                rx.cond(
                    ResetPasswordState.error != "",
                    rx.callout(
                        ResetPasswordState.error,
                        icon="triangle_alert",
                        color_scheme="red",
                        role="alert",
                        width="100%",
                    ),
                ),
                rx.button("Set password", type="submit", width="100%", size="3"),
                spacing="3",
                width="100%",
            ),
            on_submit=ResetPasswordState.set_new_password,
            reset_on_submit=False,
            width="100%",
        ),
        rx.link("Ask for a new link", href="/forgot-password", size="2"),
    )
