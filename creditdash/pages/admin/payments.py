"""Payments: the last reconcile run, what it found, open disputes, and "Run reconcile now"."""

from __future__ import annotations

import reflex as rx

from creditdash.components.admin_nav import admin_nav
from creditdash.components.layout import error_callout, notice_callout, page_layout
from creditdash.components.tables import table
from creditdash.state.admin.payments import AdminPaymentsState, DisputeRow, FindingRow


def _finding_row(row: FindingRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.badge(row["kind"])),
        rx.table.cell(row["provider"]),
        rx.table.cell(rx.code(row["session_id"], size="1")),
        rx.table.cell(rx.code(row["order_id"], size="1")),
        rx.table.cell(row["paid"]),
        rx.table.cell(row["order_amount"]),
        rx.table.cell(row["action"]),
    )


def _dispute_row(row: DisputeRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["customer"]),
        rx.table.cell(rx.code(row["order_id"], size="1")),
        rx.table.cell(row["amount"]),
        rx.table.cell(row["frozen"]),
        rx.table.cell(row["shortfall"]),
        rx.table.cell(row["reason"]),
        rx.table.cell(row["opened"]),
    )


def admin_payments_page() -> rx.Component:
    return page_layout(
        admin_nav(),
        rx.heading("Payments", size="7"),
        rx.text(
            "Reconcile compares the payment provider's paid checkout sessions with the orders "
            "and credits those whose webhook never arrived, through the same settlement as "
            "the webhook; it runs daily by itself (`creditdash payments reconcile`).",
            size="2",
            color_scheme="gray",
        ),
        error_callout(AdminPaymentsState.admin_error),
        notice_callout(AdminPaymentsState.admin_notice),
        rx.card(
            rx.flex(
                rx.text(AdminPaymentsState.summary, size="2"),
                rx.button("Run reconcile now", on_click=AdminPaymentsState.run_now),
                spacing="3",
                align="center",
                justify="between",
                wrap="wrap",
            ),
            width="100%",
        ),
        rx.cond(
            AdminPaymentsState.findings.length() > 0,
            table(
                ("Found", "Provider", "Session", "Order", "Paid", "Order amount", "Action"),
                rx.foreach(AdminPaymentsState.findings, _finding_row),
                variant="surface",
            ),
        ),
        rx.heading("Open disputes", size="4"),
        rx.cond(
            AdminPaymentsState.open_disputes.length() > 0,
            table(
                (
                    "Customer",
                    "Order",
                    "Amount",
                    "Credits frozen",
                    "Already spent",
                    "Reason",
                    "Opened",
                ),
                rx.foreach(AdminPaymentsState.open_disputes, _dispute_row),
                variant="surface",
            ),
            rx.text("No open disputes.", size="2", color_scheme="gray"),
        ),
    )
