"""Sign-up: a workspace and its owner."""

from __future__ import annotations

import reflex as rx

from creditdash.accounts.passwords import MIN_PASSWORD_CHARS
from creditdash.components.layout import brand, error_callout, field
from creditdash.routes import SIGN_IN_PATH
from creditdash.state.portal.signup import SignUpState


def _error_for(name: str) -> rx.Var:
    """The refusal when it is about this field ("" otherwise)."""
    return rx.cond(SignUpState.error_field == name, SignUpState.error, "")


def signup_page() -> rx.Component:
    return rx.center(
        rx.card(
            rx.vstack(
                brand(),
                rx.text("Create your workspace", size="3", color_scheme="gray"),
                rx.form(
                    rx.vstack(
                        field(
                            "Your name",
                            rx.input(name="name", width="100%", id="su-name"),
                            _error_for("name"),
                            width="100%",
                        ),
                        field(
                            "Workspace (company or team)",
                            rx.input(
                                name="workspace", required=True, width="100%", id="su-workspace"
                            ),
                            _error_for("workspace"),
                            width="100%",
                        ),
                        field(
                            "Email",
                            rx.input(
                                name="email",
                                type="email",
                                required=True,
                                width="100%",
                                auto_complete="username",
                                id="su-email",
                            ),
                            _error_for("email"),
                            width="100%",
                        ),
                        field(
                            f"Password ({MIN_PASSWORD_CHARS}+ characters)",
                            rx.input(
                                name="password",
                                type="password",
                                required=True,
                                width="100%",
                                auto_complete="new-password",
                                id="su-password",
                                min_length=MIN_PASSWORD_CHARS,
                            ),
                            _error_for("password"),
                            width="100%",
                        ),
                        field(
                            "Repeat the password",
                            rx.input(
                                name="confirm_password",
                                type="password",
                                required=True,
                                width="100%",
                                auto_complete="new-password",
                                id="su-confirm",
                            ),
                            _error_for("confirm_password"),
                            width="100%",
                        ),
                        error_callout(
                            rx.cond(SignUpState.error_field == "", SignUpState.error, "")
                        ),
                        rx.cond(
                            SignUpState.package != "",
                            rx.callout(
                                "After sign-up you continue to checkout of the "
                                + SignUpState.package
                                + " package.",
                                icon="shopping_cart",
                                size="1",
                                id="su-package",
                            ),
                        ),
                        rx.button(
                            "Create workspace", type="submit", width="100%", size="3", id="sign-up"
                        ),
                        rx.text(
                            "Already have an account? ",
                            rx.link("Sign in", href=SIGN_IN_PATH),
                            size="2",
                        ),
                        spacing="3",
                        width="100%",
                    ),
                    on_submit=SignUpState.sign_up,
                    reset_on_submit=False,
                    width="100%",
                ),
                spacing="4",
                width="100%",
            ),
            width="100%",
            max_width="26em",
            padding="2em",
        ),
        min_height="100vh",
        padding="1em",
        background=rx.color("gray", 2),
    )
