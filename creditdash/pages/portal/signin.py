"""Sign-in: email and password, one generic message for any failure."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import brand
from creditdash.routes import FORGOT_PASSWORD_PATH
from creditdash.state.portal.signin import SignInState


def signin_page() -> rx.Component:
    return rx.center(
        rx.card(
            rx.vstack(
                brand(),
                rx.text("Sign in to your workspace", size="3", color_scheme="gray"),
                rx.cond(
                    SignInState.notice != "",
                    rx.callout(
                        SignInState.notice, icon="circle_check", color_scheme="green", width="100%"
                    ),
                ),
                rx.form(
                    rx.vstack(
                        rx.text("Email", as_="label", size="2", weight="medium"),
                        rx.input(
                            name="email",
                            type="email",
                            placeholder="you@company.com",
                            required=True,
                            width="100%",
                            auto_complete="username",
                            id="email",
                        ),
                        rx.text("Password", as_="label", size="2", weight="medium"),
                        rx.input(
                            name="password",
                            type="password",
                            required=True,
                            width="100%",
                            auto_complete="current-password",
                            id="password",
                        ),
                        rx.cond(
                            SignInState.error != "",
                            rx.callout(
                                SignInState.error,
                                icon="triangle_alert",
                                color_scheme="red",
                                role="alert",
                                width="100%",
                            ),
                        ),
                        rx.button("Sign in", type="submit", width="100%", size="3", id="sign-in"),
                        spacing="3",
                        width="100%",
                    ),
                    on_submit=SignInState.sign_in,
                    reset_on_submit=False,
                    width="100%",
                ),
                rx.link("Forgot your password?", href=FORGOT_PASSWORD_PATH, size="2"),
                spacing="4",
                width="100%",
            ),
            width="100%",
            max_width="24em",
            padding="2em",
        ),
        min_height="100vh",
        padding="1em",
        background=rx.color("gray", 2),
    )
