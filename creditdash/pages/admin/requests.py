"""Every customer's requests, with revenue, cost and margin per day."""

from __future__ import annotations

import reflex as rx

from creditdash.components.admin_nav import admin_nav
from creditdash.components.layout import page_layout
from creditdash.components.tables import table
from creditdash.state.admin.requests import (
    AdminRequestRow,
    AdminRequestsState,
)


def _request_row(row: AdminRequestRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row["at"], size="1")),
        rx.table.cell(rx.code(row["id"], size="1")),
        rx.table.cell(rx.text(row["customer_id"], size="1")),
        rx.table.cell(row["model"]),
        rx.table.cell(rx.text(row["protocol"], size="1")),
        rx.table.cell(rx.text(row["provider"], size="1")),
        rx.table.cell(rx.badge(row["status"])),
        rx.table.cell(
            rx.vstack(
                rx.text(row["tokens"]),
                rx.cond(
                    row["disputed"] > 0,
                    rx.tooltip(
                        rx.badge(f"{row['disputed']} disputed", color_scheme="red", size="1"),
                        content="Output reported beyond the cap the upstream was sent; not charged",
                    ),
                ),
                spacing="1",
            )
        ),
        rx.table.cell(row["cost"]),
        rx.table.cell(row["unbilled"]),
        rx.table.cell(row["upstream_cost"]),
        rx.table.cell(f"{row['latency_ms']} ms"),
    )


def admin_requests_page() -> rx.Component:
    return page_layout(
        admin_nav(),
        rx.flex(
            rx.heading("Requests", size="7"),
            rx.spacer(),
            rx.link(
                rx.button(rx.icon("download", size=16), "Export CSV (30 days)", variant="soft"),
                href=AdminRequestsState.export_url,
                is_external=True,
            ),
            width="100%",
            align="center",
        ),
        rx.card(
            rx.plotly(
                data=AdminRequestsState.revenue_figure,
                use_resize_handler=True,
                style={"width": "100%", "height": "320px"},
            ),
            width="100%",
        ),
        rx.form(
            rx.flex(
                rx.input(name="customer", placeholder="customer id", size="2"),
                rx.input(name="model", placeholder="model", size="2"),
                rx.input(name="status", placeholder="status (ok, upstream_error, …)", size="2"),
                rx.button("Filter", type="submit"),
                spacing="2",
                wrap="wrap",
            ),
            on_submit=AdminRequestsState.apply,
        ),
        table(
            (
                "Time (UTC)",
                "Request",
                "Customer",
                "Model",
                "API",
                "Provider",
                "Status",
                "Tokens",
                "Charged",
                "Unbilled",
                "Upstream cost",
                "Latency",
            ),
            rx.foreach(AdminRequestsState.rows, _request_row),
            variant="surface",
        ),
        rx.flex(
            rx.button("Previous", variant="soft", on_click=AdminRequestsState.turn(-1)),
            rx.text(
                AdminRequestsState.total.to_string(),
                " requests · page ",
                AdminRequestsState.page.to_string(),
                size="2",
            ),
            rx.button("Next", variant="soft", on_click=AdminRequestsState.turn(1)),
            spacing="3",
            align="center",
        ),
    )
