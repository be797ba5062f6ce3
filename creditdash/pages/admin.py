"""The operator's home: every customer's balance and the ledger's health."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import page_layout
from creditdash.state.admin import AdminState, CustomerRow


def customer_row(row: CustomerRow) -> rx.Component:
    mono = {"font_family": "ui-monospace, monospace"}
    return rx.table.row(
        rx.table.cell(
            rx.vstack(
                rx.text(row["name"], weight="medium"),
                rx.text(row["id"], size="1", color_scheme="gray", **mono),
                spacing="0",
            )
        ),
        rx.table.cell(row["email"]),
        rx.table.cell(
            rx.badge(
                row["status"], color_scheme=rx.cond(row["status"] == "active", "green", "orange")
            )
        ),
        rx.table.cell(rx.text(row["balance"], **mono), text_align="right"),
        rx.table.cell(rx.text(row["held"], **mono), text_align="right"),
        rx.table.cell(rx.text(row["available"], **mono), text_align="right"),
    )


def ledger_health() -> rx.Component:
    return rx.cond(
        AdminState.ledger_problems.length() > 0,
        rx.callout(
            rx.vstack(
                rx.text("Ledger invariants violated", weight="bold"),
                rx.foreach(AdminState.ledger_problems, lambda p: rx.text(p, size="2")),
            ),
            icon="octagon_alert",
            color_scheme="red",
        ),
        rx.cond(
            AdminState.ledger_checked,
            rx.callout(
                "Ledger verified: debits equal credits, every balance matches its transfers.",
                icon="circle_check",
                color_scheme="green",
            ),
        ),
    )


def admin_page() -> rx.Component:
    return page_layout(
        rx.heading("Operations", size="7"),
        ledger_health(),
        rx.hstack(
            rx.heading("Customers", size="5"),
            rx.spacer(),
            rx.input(
                placeholder="Search name or email",
                value=AdminState.search,
                on_change=AdminState.set_search.debounce(300),
                width="18em",
            ),
            width="100%",
            align="center",
        ),
        rx.cond(
            AdminState.customers.length() > 0,
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        rx.table.column_header_cell("Customer"),
                        rx.table.column_header_cell("Email"),
                        rx.table.column_header_cell("Status"),
                        rx.table.column_header_cell("Balance", text_align="right"),
                        rx.table.column_header_cell("Held", text_align="right"),
                        rx.table.column_header_cell("Available", text_align="right"),
                    )
                ),
                rx.table.body(rx.foreach(AdminState.customers, customer_row)),
                variant="surface",
                width="100%",
            ),
            rx.callout("No customers match.", icon="info"),
        ),
    )
