"""The invitation page: what the link offers, and the one action that fits who opened it."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import brand, error_callout, field, notice_callout
from creditdash.state.base import SessionState
from creditdash.state.portal.invite import InviteState


def _new_account() -> rx.Component:
    return rx.form(
        rx.vstack(
            rx.text("Create your account for ", rx.text.strong(InviteState.invite_email), "."),
            field("Your name", rx.input(name="name", id="invite-name")),
            field(
                "Password (10+ characters)",
                rx.input(name="password", type="password", required=True, id="invite-password"),
            ),
            field(
                "Repeat the password",
                rx.input(
                    name="confirm_password", type="password", required=True, id="invite-confirm"
                ),
            ),
            rx.button("Create account and join", type="submit", id="invite-create"),
            spacing="3",
            width="100%",
        ),
        on_submit=InviteState.create_account,
        width="100%",
    )


def _signed_in() -> rx.Component:
    return rx.cond(
        SessionState.user_email == InviteState.invite_email,
        rx.button("Accept invitation", on_click=InviteState.accept, id="invite-accept"),
        rx.vstack(
            rx.text(
                "This invitation is for ",
                rx.text.strong(InviteState.invite_email),
                ", and you are signed in as ",
                SessionState.user_email,
                ". Sign out, then open the link again.",
            ),
            rx.button("Sign out", on_click=SessionState.sign_out, variant="soft"),
        ),
    )


def invite_page() -> rx.Component:
    return rx.center(
        rx.card(
            rx.vstack(
                brand(),
                rx.heading("Invitation", size="5"),
                rx.cond(
                    ~InviteState.loaded,
                    rx.spinner(),
                    rx.cond(
                        InviteState.problem != "",
                        error_callout(InviteState.problem),
                        rx.vstack(
                            rx.text(
                                "Join ",
                                rx.text.strong(InviteState.invite_workspace),
                                " as ",
                                rx.text.strong(InviteState.invite_role),
                                ". The link expires ",
                                InviteState.invite_expires,
                                ".",
                            ),
                            rx.cond(
                                SessionState.user_email != "",
                                _signed_in(),
                                rx.cond(
                                    InviteState.has_account,
                                    rx.vstack(
                                        rx.text(
                                            InviteState.invite_email,
                                            " already has an account: sign in to accept.",
                                        ),
                                        rx.link(
                                            rx.button("Sign in", id="invite-sign-in"),
                                            href=InviteState.sign_in_link,
                                        ),
                                    ),
                                    _new_account(),
                                ),
                            ),
                            spacing="3",
                            width="100%",
                        ),
                    ),
                ),
                error_callout(InviteState.error),
                notice_callout(InviteState.notice),
                spacing="4",
                width="100%",
            ),
            width="100%",
            max_width="28em",
            padding="2em",
        ),
        min_height="100vh",
        padding="1em",
    )
