"""Credit packages on sale, and the invoices and credit notes issued."""

from __future__ import annotations

import reflex as rx

from creditdash.components.admin_nav import admin_nav
from creditdash.components.layout import error_callout, notice_callout, page_layout
from creditdash.components.tables import table
from creditdash.state.admin.sales import (
    AdminInvoiceRow,
    AdminSalesState,
    PackageRow,
)


def _package_form(row: PackageRow | None = None) -> rx.Component:
    def value(key: str, default: str) -> object:
        return row[key] if row is not None else default  # type: ignore[literal-required]

    return rx.form(
        rx.flex(
            rx.input(
                name="name",
                default_value=value("name", ""),
                placeholder="name",
                required=True,
                size="1",
                width="8em",
                read_only=row is not None,
            ),
            rx.input(
                name="currency", default_value=value("currency", "EUR"), size="1", width="4em"
            ),
            rx.input(
                name="unit_price",
                default_value=value("unit_price", ""),
                placeholder="price",
                size="1",
                width="7em",
            ),
            rx.input(
                name="credits",
                default_value=value("credits", ""),
                placeholder="credits",
                size="1",
                width="8em",
            ),
            rx.input(
                name="bonus",
                default_value=value("bonus", "0"),
                placeholder="bonus",
                size="1",
                width="7em",
            ),
            rx.input(
                name="min_quantity",
                default_value=(row["min_quantity"].to_string() if row is not None else "1"),
                size="1",
                width="3.5em",
            ),
            rx.input(
                name="max_quantity",
                default_value=(row["max_quantity"].to_string() if row is not None else "1"),
                size="1",
                width="3.5em",
            ),
            rx.input(
                name="description",
                default_value=value("description", ""),
                placeholder="description",
                size="1",
                width="14em",
            ),
            rx.checkbox(
                "custom",
                name="custom",
                default_checked=(row["kind"] == "custom") if row is not None else False,
                size="1",
            ),
            rx.checkbox(
                "on sale",
                name="active",
                default_checked=row["active"] if row is not None else True,
                size="1",
            ),
            rx.button("Save", type="submit", size="1"),
            spacing="2",
            align="center",
            wrap="wrap",
        ),
        on_submit=AdminSalesState.save_package,
        reset_on_submit=row is None,
        # Remount when the data changes: inputs keep their first default value otherwise.
        key=(row["name"] + row["unit_price"] + row["credits"] + row["bonus"] + row["description"])
        if row is not None
        else "new",
    )


def _admin_invoice_row(row: AdminInvoiceRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.code(row["number"], size="1")),
        rx.table.cell(row["kind"]),
        rx.table.cell(row["issued"]),
        rx.table.cell(rx.text(row["customer_id"], size="1")),
        rx.table.cell(rx.text(row["order_id"], size="1")),
        rx.table.cell(row["gross"]),
        rx.table.cell(row["tax_scheme"]),
        rx.table.cell(rx.link("PDF", href=row["url"], is_external=True)),
    )


def admin_sales_page() -> rx.Component:
    return page_layout(
        admin_nav(),
        rx.heading("Packages and invoices", size="7"),
        rx.text(
            "Per unit: price in the currency, credits and bonus credits; quantity bounds. "
            "Custom packages are contract terms, settled by bank transfer only.",
            size="2",
            color_scheme="gray",
        ),
        error_callout(AdminSalesState.admin_error),
        notice_callout(AdminSalesState.admin_notice),
        rx.card(
            rx.vstack(
                rx.foreach(AdminSalesState.packages, lambda p: _package_form(p)),
                rx.divider(),
                rx.text("New package", weight="bold"),
                _package_form(None),
                spacing="3",
            ),
            width="100%",
        ),
        rx.heading("Invoices and credit notes", size="5"),
        table(
            ("Number", "Kind", "Issued", "Customer", "Order", "Total", "Tax", ""),
            rx.foreach(AdminSalesState.invoices, _admin_invoice_row),
            variant="surface",
        ),
    )
