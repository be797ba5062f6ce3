"""The payment-order queue: approve or reject bank transfers, refund paid orders."""

from __future__ import annotations

import reflex as rx

from creditdash.components.admin_nav import admin_nav
from creditdash.components.confirm import confirm_dialog
from creditdash.components.layout import error_callout, notice_callout, page_layout
from creditdash.components.tables import table
from creditdash.state.admin.orders import (
    ORDER_FILTERS,
    AdminOrderRow,
    AdminOrdersState,
)


def _order_actions(row: AdminOrderRow) -> rx.Component:
    approve = rx.form(
        rx.flex(
            rx.el.input(type="hidden", name="order_id", value=row["id"]),
            rx.input(name="reference", placeholder="bank reference", required=True, size="1"),
            rx.button("Approve", type="submit", size="1", color_scheme="green"),
            spacing="1",
        ),
        on_submit=AdminOrdersState.approve,
        reset_on_submit=True,
    )
    reject = rx.form(
        rx.flex(
            rx.el.input(type="hidden", name="order_id", value=row["id"]),
            rx.input(name="reason", placeholder="why", required=True, size="1"),
            rx.button("Reject", type="submit", size="1", color_scheme="red", variant="soft"),
            spacing="1",
        ),
        on_submit=AdminOrdersState.reject,
        reset_on_submit=True,
    )
    refund = rx.form(
        rx.flex(
            rx.el.input(type="hidden", name="order_id", value=row["id"]),
            rx.input(name="amount", placeholder="amount", required=True, size="1", width="6em"),
            rx.input(name="reason", placeholder="reason", required=True, size="1"),
            rx.button("Refund…", type="submit", size="1", variant="soft"),
            spacing="1",
        ),
        # The refund runs only once its confirmation is accepted (confirm_refund); what was
        # typed stays in the form when the check refuses it.
        on_submit=AdminOrdersState.ask_refund,
        reset_on_submit=False,
        id="refund-" + row["id"],
    )
    return rx.cond(
        (row["status"] == "awaiting_payment") | (row["status"] == "expired"),
        rx.cond(row["method"] == "manual", rx.vstack(approve, reject, spacing="1"), ""),
        rx.cond(row["refundable"], refund, ""),
    )


def _order_row(row: AdminOrderRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row["created"], size="1")),
        rx.table.cell(
            rx.vstack(
                rx.code(row["id"], size="1"),
                rx.text(row["customer_id"], size="1", color_scheme="gray"),
                spacing="0",
            )
        ),
        rx.table.cell(row["package"]),
        rx.table.cell(row["gross"], " ", row["currency"]),
        rx.table.cell(rx.badge(row["status"].replace("_", " "))),
        rx.table.cell(
            row["method"],
            rx.cond(row["reference"] != "", rx.text(rx.code(row["reference"], size="1")), ""),
        ),
        rx.table.cell(rx.text(row["maker"], size="1")),
        rx.table.cell(_order_actions(row)),
    )


def admin_orders_page() -> rx.Component:
    return page_layout(
        admin_nav(),
        rx.flex(
            rx.heading("Payment orders", size="7"),
            rx.spacer(),
            rx.select(
                ORDER_FILTERS,
                value=AdminOrdersState.status_filter,
                on_change=AdminOrdersState.set_filter,
            ),
            width="100%",
            align="center",
        ),
        rx.text(
            "Bank transfers are approved by an admin other than the one who opened the "
            "order; approval credits once. Refunds follow the published policy.",
            size="2",
            color_scheme="gray",
        ),
        error_callout(AdminOrdersState.admin_error),
        notice_callout(AdminOrdersState.admin_notice),
        confirm_dialog(
            title="Refund this order?",
            text=AdminOrdersState.confirm_text,
            action="Refund",
            on_confirm=AdminOrdersState.confirm_refund,
            on_cancel=AdminOrdersState.cancel_confirm,
            confirm_id="confirm-refund",
        ),
        rx.cond(
            AdminOrdersState.rows.length() > 0,
            table(
                (
                    "Opened",
                    "Order / customer",
                    "Package",
                    "Total",
                    "Status",
                    "Method",
                    "Opened by",
                    "",
                ),
                rx.foreach(AdminOrdersState.rows, _order_row),
                variant="surface",
            ),
            rx.callout("No orders in this state.", icon="info"),
        ),
    )
