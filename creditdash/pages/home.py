"""A signed-in customer's home: each workspace's balance, held and available credits."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import page_layout, stat_card
from creditdash.state.home import HomeState, WorkspaceRow


def workspace_card(row: WorkspaceRow) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.heading(row["name"], size="5"),
            rx.badge(row["role"], variant="soft"),
            rx.text(row["id"], size="1", color_scheme="gray", font_family="monospace"),
            align="center",
            spacing="3",
        ),
        rx.flex(
            stat_card("Balance (credits)", row["balance"]),
            stat_card("Held by requests in flight", row["held"]),
            stat_card("Available", row["available"]),
            spacing="4",
            wrap="wrap",
            width="100%",
        ),
        spacing="3",
        width="100%",
    )


def home_page() -> rx.Component:
    return page_layout(
        rx.heading(f"Welcome, {HomeState.user_name}", size="7"),
        rx.cond(
            HomeState.loaded,
            rx.cond(
                HomeState.workspaces.length() > 0,
                rx.foreach(HomeState.workspaces, workspace_card),
                rx.callout(
                    "You are not a member of any workspace yet. Ask its owner for an invitation.",
                    icon="info",
                ),
            ),
            rx.spinner(size="3"),
        ),
    )
