"""Billing: buy credits with the final amount shown first, orders, invoices, profile, statements."""

from __future__ import annotations

import reflex as rx

from creditdash.billing.invoicing.countries import COUNTRY_CHOICES
from creditdash.components.layout import (
    can,
    error_callout,
    field,
    loading,
    notice_callout,
    page_layout,
)
from creditdash.components.tables import table
from creditdash.routes import AUTOTOPUP_PATH
from creditdash.state.portal.billing import BillingState
from creditdash.state.portal.billing_rows import InvoiceRow, OrderRow, PackageCard


def package_tile(card: PackageCard) -> rx.Component:
    chosen = BillingState.selected == card["name"]
    return rx.card(
        rx.vstack(
            rx.heading(card["name"], size="4"),
            rx.text(card["price"], size="5", weight="bold"),
            rx.text(
                card["credits"],
                " credits",
                rx.cond(card["bonus"] != "0", " + " + card["bonus"] + " bonus", ""),
                size="2",
            ),
            rx.text(card["description"], size="1", color_scheme="gray"),
            rx.cond(card["manual_only"], rx.badge("bank transfer", variant="soft")),
            spacing="1",
        ),
        on_click=BillingState.choose(card["name"]),
        cursor="pointer",
        border=rx.cond(chosen, f"2px solid {rx.color('iris', 9)}", "2px solid transparent"),
        min_width="11em",
        flex="1",
        id="package-" + card["name"],
    )


def buy_panel() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Buy credits", size="5"),
            rx.flex(
                rx.foreach(BillingState.packages, package_tile),
                spacing="3",
                wrap="wrap",
                width="100%",
            ),
            rx.flex(
                field(
                    "Quantity",
                    rx.select(
                        BillingState.quantity_options,
                        value=BillingState.quantity.to_string(),
                        on_change=BillingState.set_quantity,
                    ),
                ),
                rx.cond(
                    BillingState.quote_gross != "",
                    rx.data_list.root(
                        rx.data_list.item(
                            rx.data_list.label("Credits"),
                            rx.data_list.value(BillingState.quote_credits),
                        ),
                        rx.data_list.item(
                            rx.data_list.label("Net"), rx.data_list.value(BillingState.quote_net)
                        ),
                        rx.data_list.item(
                            rx.data_list.label(BillingState.quote_tax_label),
                            rx.data_list.value(BillingState.quote_tax),
                        ),
                        rx.data_list.item(
                            rx.data_list.label(rx.text("Total", weight="bold")),
                            rx.data_list.value(
                                rx.text(BillingState.quote_gross, weight="bold", id="quote-total")
                            ),
                        ),
                        orientation="horizontal",
                    ),
                ),
                spacing="6",
                wrap="wrap",
                width="100%",
            ),
            rx.cond(
                BillingState.quote_wording != "",
                rx.text(BillingState.quote_wording, size="1", color_scheme="gray"),
            ),
            rx.checkbox(
                rx.text(
                    "I accept the terms and the refund policy: ",
                    BillingState.refund_policy,
                    size="2",
                ),
                checked=BillingState.accept_terms,
                on_change=BillingState.set_accept_terms,
                id="accept-terms",
            ),
            error_callout(BillingState.error),
            rx.flex(
                rx.cond(
                    ~BillingState.selected_manual_only,
                    rx.button(
                        rx.icon("credit-card", size=16),
                        "Pay ",
                        BillingState.quote_gross,
                        on_click=BillingState.pay,
                        loading=BillingState.busy,
                        size="3",
                        id="pay",
                    ),
                ),
                rx.button(
                    "Pay by bank transfer",
                    on_click=BillingState.request_manual,
                    variant=rx.cond(BillingState.selected_manual_only, "solid", "soft"),
                    size="3",
                    id="manual-order",
                ),
                spacing="3",
                wrap="wrap",
            ),
            spacing="4",
            width="100%",
        ),
        width="100%",
    )


def order_row(row: OrderRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row["created"], size="1")),
        rx.table.cell(rx.code(row["id"], size="1")),
        rx.table.cell(row["package"], " x", row["quantity"].to_string()),
        rx.table.cell(row["credits"]),
        rx.table.cell(row["gross"]),
        rx.table.cell(
            rx.badge(
                row["status"].replace("_", " "),
                color_scheme=rx.cond(row["status"] == "paid", "green", "gray"),
            )
        ),
        rx.table.cell(
            rx.cond(
                row["checkout_url"] != "",
                rx.link("Pay now", href=row["checkout_url"], is_external=False),
                rx.cond(row["reference"] != "", rx.code(row["reference"], size="1"), ""),
            ),
        ),
    )


def invoice_row(row: InvoiceRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.code(row["number"])),
        rx.table.cell(row["kind"]),
        rx.table.cell(row["issued"]),
        rx.table.cell(row["gross"]),
        rx.table.cell(row["tax_scheme"]),
        rx.table.cell(
            rx.link(
                rx.icon("file-down", size=16),
                " PDF",
                href=row["url"],
                is_external=True,
                class_name="invoice-pdf",
            )
        ),
    )


def country_select(current: rx.Var[str] | str) -> rx.Component:
    """Every ISO 3166-1 country by name; the form submits the two-letter code."""
    return rx.select.root(
        rx.select.trigger(placeholder="Choose a country"),
        rx.select.content(
            *[rx.select.item(f"{name} ({code})", value=code) for code, name in COUNTRY_CHOICES]
        ),
        name="country",
        default_value=current,
        required=True,
    )


def profile_form() -> rx.Component:
    p = BillingState.profile
    return rx.card(
        rx.form(
            rx.vstack(
                rx.heading("Billing profile", size="5"),
                rx.text(
                    "Used for tax and on invoices issued from now on; invoices already "
                    "issued keep the details they were issued with.",
                    size="2",
                    color_scheme="gray",
                ),
                rx.flex(
                    field(
                        "Legal name",
                        rx.input(name="legal_name", default_value=p["legal_name"], required=True),
                    ),
                    field("Country", country_select(p["country"])),
                    field(
                        "State / province",
                        rx.input(name="region", default_value=p["region"], placeholder="ON"),
                    ),
                    field(
                        "Tax ID",
                        rx.input(
                            name="tax_id", default_value=p["tax_id"], placeholder="DE123456789"
                        ),
                    ),
                    spacing="3",
                    wrap="wrap",
                    width="100%",
                ),
                rx.flex(
                    field(
                        "Address", rx.input(name="address_line1", default_value=p["address_line1"])
                    ),
                    field(
                        "Address line 2",
                        rx.input(name="address_line2", default_value=p["address_line2"]),
                    ),
                    field("City", rx.input(name="city", default_value=p["city"])),
                    field(
                        "Postal code", rx.input(name="postal_code", default_value=p["postal_code"])
                    ),
                    field(
                        "Billing email",
                        rx.input(
                            name="billing_email", type="email", default_value=p["billing_email"]
                        ),
                    ),
                    spacing="3",
                    wrap="wrap",
                    width="100%",
                ),
                rx.checkbox(
                    "We buy as a business", name="is_business", default_checked=p["is_business"]
                ),
                error_callout(BillingState.profile_error),
                rx.cond(
                    BillingState.profile_saved,
                    rx.callout("Saved.", icon="check", color_scheme="green"),
                ),
                rx.button("Save profile", type="submit"),
                spacing="3",
                width="100%",
            ),
            on_submit=BillingState.save_profile,
            reset_on_submit=False,
            key=BillingState.workspace_id,
        ),
        width="100%",
    )


def statements_card() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Statement", size="5"),
            rx.text(
                "Every balance movement in a period, from opening to closing balance.",
                size="2",
                color_scheme="gray",
            ),
            rx.flex(
                field(
                    "From",
                    rx.input(
                        type="date",
                        value=BillingState.statement_from,
                        on_change=BillingState.set_statement_from,
                    ),
                ),
                field(
                    "To",
                    rx.input(
                        type="date",
                        value=BillingState.statement_to,
                        on_change=BillingState.set_statement_to,
                    ),
                ),
                rx.link(
                    rx.button(rx.icon("download", size=16), "Download CSV", variant="soft"),
                    href=BillingState.statement_url,
                    is_external=True,
                ),
                spacing="3",
                align="end",
                wrap="wrap",
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def billing_page() -> rx.Component:
    return page_layout(
        rx.moment(interval=2000, on_change=BillingState.tick, display="none"),
        rx.flex(
            rx.heading("Billing", size="7"),
            rx.link(
                rx.icon("refresh-cw", size=16),
                " Automatic top-ups",
                href=AUTOTOPUP_PATH,
                id="autotopup-link",
            ),
            justify="between",
            align="center",
            width="100%",
        ),
        notice_callout(BillingState.notice),
        rx.cond(
            BillingState.pending_order != "",
            rx.flex(
                rx.spinner(),
                rx.text("Waiting for the payment confirmation…"),
                spacing="2",
                id="payment-pending",
            ),
        ),
        loading(
            BillingState.loaded,
            rx.cond(can("billing.manage"), buy_panel()),
            rx.card(
                rx.vstack(
                    rx.heading("Orders", size="5"),
                    rx.cond(
                        BillingState.orders.length() > 0,
                        table(
                            ("Opened", "Order", "Package", "Credits", "Total", "Status", ""),
                            rx.foreach(BillingState.orders, order_row),
                        ),
                        rx.text("No orders yet.", color_scheme="gray"),
                    ),
                    rx.cond(
                        BillingState.bank_details != "",
                        rx.text(
                            "Bank transfers to ",
                            BillingState.seller_name,
                            ": ",
                            BillingState.bank_details,
                            size="1",
                            color_scheme="gray",
                        ),
                    ),
                    spacing="3",
                    width="100%",
                ),
                width="100%",
            ),
            rx.card(
                rx.vstack(
                    rx.heading("Invoices", size="5"),
                    rx.cond(
                        BillingState.invoices.length() > 0,
                        table(
                            ("Number", "Kind", "Issued", "Total", "Tax", ""),
                            rx.foreach(BillingState.invoices, invoice_row),
                        ),
                        rx.text("Invoices appear here once an order is paid.", color_scheme="gray"),
                    ),
                    spacing="3",
                    width="100%",
                ),
                width="100%",
            ),
            rx.cond(can("billing.manage"), profile_form()),
            statements_card(),
        ),
    )
