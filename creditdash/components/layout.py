"""The frame every signed-in page uses: a top bar with navigation and the user menu."""

from __future__ import annotations

import reflex as rx

from creditdash.state.session import SessionState


def brand() -> rx.Component:
    return rx.hstack(
        rx.icon("coins", size=22, color=rx.color("iris", 10)),
        rx.heading("creditdash", size="5", weight="bold"),
        align="center",
        spacing="2",
    )


def top_bar() -> rx.Component:
    return rx.hstack(
        brand(),
        rx.hstack(
            rx.link("Home", href="/home", size="2"),
            rx.cond(SessionState.is_admin, rx.link("Admin", href="/admin", size="2")),
            spacing="4",
        ),
        rx.spacer(),
        rx.text(SessionState.user_email, size="2", color_scheme="gray"),
        rx.button("Sign out", on_click=SessionState.sign_out, variant="soft", size="2"),
        align="center",
        spacing="5",
        width="100%",
        padding_x="1.5em",
        padding_y="0.9em",
        border_bottom=f"1px solid {rx.color('gray', 5)}",
        background=rx.color("gray", 1),
        wrap="wrap",
    )


def page_layout(*children: rx.Component) -> rx.Component:
    return rx.box(
        top_bar(),
        rx.container(rx.vstack(*children, spacing="5", width="100%"), size="4", padding_y="2em"),
        min_height="100vh",
        background=rx.color("gray", 2),
    )


def stat_card(label: str, value: rx.Var | str, hint: str = "") -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.text(label, size="2", color_scheme="gray"),
            rx.heading(value, size="6", font_family="ui-monospace, monospace"),
            rx.cond(hint != "", rx.text(hint, size="1", color_scheme="gray")),
            spacing="1",
        ),
        min_width="12em",
        flex="1",
    )
