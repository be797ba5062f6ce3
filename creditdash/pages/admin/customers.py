"""The operator's home: every customer's balance and the ledger's health."""

from __future__ import annotations

import reflex as rx

from creditdash.components.admin_nav import admin_nav
from creditdash.components.confirm import confirm_dialog
from creditdash.components.layout import page_layout
from creditdash.state.admin.customers import AdminState, CustomerRow


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
        rx.table.cell(rx.text(row["credit_limit"], **mono), text_align="right"),
        rx.table.cell(rx.text(row["budget"], **mono), text_align="right"),
        rx.table.cell(rx.text(row["autotopup"], size="1"), class_name="autotopup-rule"),
        rx.table.cell(customer_actions(row)),
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


def customer_actions(row: CustomerRow) -> rx.Component:
    return rx.dialog.root(
        rx.dialog.trigger(rx.button("Manage", size="1", variant="soft")),
        rx.dialog.content(
            rx.dialog.title(row["name"]),
            rx.vstack(
                rx.form(
                    rx.vstack(
                        rx.text("Grant or take back credits (audited)", weight="bold"),
                        rx.el.input(type="hidden", name="customer_id", value=row["id"]),
                        rx.el.input(type="hidden", name="key", value=AdminState.adjust_key),
                        rx.flex(
                            rx.select(["grant", "debit"], name="direction", default_value="grant"),
                            rx.input(
                                name="amount", placeholder="credits, e.g. 10.5", required=True
                            ),
                            spacing="2",
                        ),
                        rx.input(name="reason", placeholder="reason", required=True, width="100%"),
                        rx.button("Apply", type="submit"),
                        spacing="2",
                        width="100%",
                    ),
                    # A debit runs only once confirmed; what was typed stays on a refusal.
                    on_submit=AdminState.ask_adjust,
                    reset_on_submit=False,
                    id="adjust-" + row["id"],
                ),
                rx.divider(),
                rx.form(
                    rx.vstack(
                        rx.text("Credit limit (how far below zero it may spend)", weight="bold"),
                        rx.el.input(type="hidden", name="customer_id", value=row["id"]),
                        rx.flex(
                            rx.input(name="limit", default_value=row["limit_form"], required=True),
                            rx.input(name="reason", placeholder="reason", required=True),
                            rx.button("Save", type="submit", variant="soft"),
                            spacing="2",
                        ),
                        spacing="2",
                    ),
                    on_submit=AdminState.set_limit,
                ),
                rx.divider(),
                rx.form(
                    rx.vstack(
                        rx.text("Models this workspace may call (empty: all)", weight="bold"),
                        rx.el.input(type="hidden", name="customer_id", value=row["id"]),
                        rx.flex(
                            rx.input(
                                name="models",
                                default_value=row["allowed_models"],
                                placeholder="gpt-4o-mini, text-embedding-3-small",
                                width="22em",
                            ),
                            rx.button("Save", type="submit", variant="soft"),
                            spacing="2",
                        ),
                        spacing="2",
                    ),
                    on_submit=AdminState.set_models,
                ),
                rx.divider(),
                rx.cond(
                    row["autotopup_status"] == "active",
                    rx.button(
                        "Pause automatic top-ups",
                        variant="soft",
                        on_click=AdminState.set_autotopup(row["id"], "paused"),
                    ),
                    rx.cond(
                        row["autotopup_status"] == "paused",
                        rx.button(
                            "Resume automatic top-ups",
                            variant="soft",
                            on_click=AdminState.set_autotopup(row["id"], "active"),
                        ),
                    ),
                ),
                rx.cond(
                    row["status"] == "active",
                    rx.button(
                        "Suspend (keys stop within seconds)",
                        color_scheme="red",
                        variant="soft",
                        on_click=AdminState.ask_status(row["id"], "suspended"),
                    ),
                    rx.button(
                        "Reactivate",
                        color_scheme="green",
                        variant="soft",
                        on_click=AdminState.set_status(row["id"], "active"),
                    ),
                ),
                rx.cond(
                    AdminState.admin_error != "",
                    rx.callout(AdminState.admin_error, color_scheme="red", icon="triangle_alert"),
                ),
                rx.cond(
                    AdminState.admin_notice != "",
                    rx.callout(AdminState.admin_notice, color_scheme="green", icon="check"),
                ),
                confirm_dialog(
                    title=AdminState.confirm_title,
                    text=rx.cond(AdminState.confirm_for == row["id"], AdminState.confirm_text, ""),
                    action=AdminState.confirm_action,
                    on_confirm=AdminState.confirm,
                    on_cancel=AdminState.cancel_confirm,
                ),
                rx.flex(
                    rx.dialog.close(rx.button("Close", variant="soft")), justify="end", width="100%"
                ),
                spacing="3",
                width="100%",
            ),
        ),
    )


def admin_page() -> rx.Component:
    return page_layout(
        admin_nav(),
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
                        rx.table.column_header_cell("Limit", text_align="right"),
                        rx.table.column_header_cell("Budget this month", text_align="right"),
                        rx.table.column_header_cell("Auto top-up"),
                        rx.table.column_header_cell(""),
                    )
                ),
                rx.table.body(rx.foreach(AdminState.customers, customer_row)),
                variant="surface",
                width="100%",
            ),
            rx.callout("No customers match.", icon="info"),
        ),
    )
