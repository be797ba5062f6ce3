"""Admin pages: the payment-order queue, prices and margins, the audit log."""

from __future__ import annotations

import reflex as rx

from creditdash.components.admin_nav import admin_nav
from creditdash.components.layout import error_callout, notice_callout, page_layout
from creditdash.state.admin_ops import (
    ORDER_FILTERS,
    AdminAuditState,
    AdminInvoiceRow,
    AdminModelsState,
    AdminOrderRow,
    AdminOrdersState,
    AdminProvidersState,
    AdminRequestRow,
    AdminRequestsState,
    AdminSalesState,
    AuditRow,
    FallbackRow,
    MarginRow,
    ModelRow,
    PackageRow,
    ProviderRow,
    RouteRow,
    ScheduleRow,
)


def _table(headers: tuple[str, ...], body: rx.Component) -> rx.Component:
    return rx.box(
        rx.table.root(
            rx.table.header(rx.table.row(*[rx.table.column_header_cell(h) for h in headers])),
            rx.table.body(body),
            width="100%",
            variant="surface",
        ),
        width="100%",
        overflow_x="auto",
    )


def _order_actions(row: AdminOrderRow) -> rx.Component:
    approve = rx.form(
        rx.flex(
            rx.input(type="hidden", name="order_id", value=row["id"]),
            rx.input(name="reference", placeholder="bank reference", required=True, size="1"),
            rx.button("Approve", type="submit", size="1", color_scheme="green"),
            spacing="1",
        ),
        on_submit=AdminOrdersState.approve,
        reset_on_submit=True,
    )
    reject = rx.form(
        rx.flex(
            rx.input(type="hidden", name="order_id", value=row["id"]),
            rx.input(name="reason", placeholder="why", required=True, size="1"),
            rx.button("Reject", type="submit", size="1", color_scheme="red", variant="soft"),
            spacing="1",
        ),
        on_submit=AdminOrdersState.reject,
        reset_on_submit=True,
    )
    refund = rx.form(
        rx.flex(
            rx.input(type="hidden", name="order_id", value=row["id"]),
            rx.input(name="amount", placeholder="amount", required=True, size="1", width="6em"),
            rx.input(name="reason", placeholder="reason", required=True, size="1"),
            rx.button("Refund", type="submit", size="1", variant="soft"),
            spacing="1",
        ),
        on_submit=AdminOrdersState.refund,
        reset_on_submit=True,
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
        rx.cond(
            AdminOrdersState.rows.length() > 0,
            _table(
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
            ),
            rx.callout("No orders in this state.", icon="info"),
        ),
    )


def _model_row(row: ModelRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row["name"], weight="medium")),
        rx.table.cell(
            rx.form(
                rx.flex(
                    rx.input(type="hidden", name="model", value=row["name"]),
                    rx.input(name="input", default_value=row["input"], size="1", width="7em"),
                    rx.input(name="output", default_value=row["output"], size="1", width="7em"),
                    rx.input(name="cached", default_value=row["cached"], size="1", width="7em"),
                    rx.input(name="fee", default_value=row["fee"], size="1", width="6em"),
                    rx.checkbox("accept a loss", name="acknowledge", size="1"),
                    rx.button("Save", type="submit", size="1"),
                    spacing="2",
                    align="center",
                    wrap="wrap",
                ),
                on_submit=AdminModelsState.save_price,
                key=row["name"] + row["input"] + row["output"],
            )
        ),
    )


def _schedule_row(row: ScheduleRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["effective_at"]),
        rx.table.cell(row["model"]),
        rx.table.cell(rx.code(row["price"], size="1")),
        rx.table.cell(rx.badge(row["status"])),
        rx.table.cell(rx.text(row["created_by"], size="1")),
        rx.table.cell(
            rx.cond(
                row["status"] == "pending",
                rx.button(
                    "Cancel",
                    size="1",
                    variant="soft",
                    color_scheme="red",
                    on_click=AdminModelsState.cancel_schedule(row["id"]),
                ),
                "",
            )
        ),
    )


def _route_row(row: RouteRow) -> rx.Component:
    small = {"size": "1", "width": "6em"}
    return rx.table.row(
        rx.table.cell(row["model"]),
        rx.table.cell(rx.code(row["provider"] + "/" + row["upstream_model"], size="1")),
        rx.table.cell(
            rx.form(
                rx.flex(
                    rx.input(type="hidden", name="model", value=row["model"]),
                    rx.input(type="hidden", name="provider", value=row["provider"]),
                    rx.input(type="hidden", name="upstream_model", value=row["upstream_model"]),
                    rx.input(
                        name="priority",
                        default_value=row["priority"].to_string(),
                        size="1",
                        width="3.5em",
                    ),
                    rx.input(
                        name="weight",
                        default_value=row["weight"].to_string(),
                        size="1",
                        width="3.5em",
                    ),
                    rx.input(name="input", default_value=row["input"], **small),
                    rx.input(name="output", default_value=row["output"], **small),
                    rx.input(name="cached", default_value=row["cached"], **small),
                    rx.input(name="fee", default_value=row["fee"], **small),
                    rx.checkbox("on", name="enabled", default_checked=row["enabled"], size="1"),
                    rx.checkbox("accept a loss", name="acknowledge", size="1"),
                    rx.button("Save", type="submit", size="1"),
                    spacing="2",
                    align="center",
                    wrap="wrap",
                ),
                on_submit=AdminModelsState.save_route,
                key=row["model"]
                + row["provider"]
                + row["upstream_model"]
                + row["input"]
                + row["output"]
                + row["priority"].to_string()
                + row["weight"].to_string(),
            )
        ),
    )


def _fallback_row(row: FallbackRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["model"]),
        rx.table.cell(
            rx.form(
                rx.flex(
                    rx.input(type="hidden", name="model", value=row["model"]),
                    rx.input(
                        name="fall_through",
                        default_value=row["fall_through"],
                        size="1",
                        width="16em",
                    ),
                    rx.input(
                        name="max_attempts",
                        default_value=row["max_attempts"].to_string(),
                        size="1",
                        width="3.5em",
                    ),
                    rx.input(
                        name="attempt_timeout_s",
                        default_value=row["attempt_timeout_s"],
                        placeholder="provider's",
                        size="1",
                        width="6em",
                    ),
                    rx.input(
                        name="cooldown_failures",
                        default_value=row["cooldown_failures"].to_string(),
                        size="1",
                        width="3.5em",
                    ),
                    rx.input(
                        name="cooldown_s",
                        default_value=row["cooldown_s"].to_string(),
                        size="1",
                        width="4.5em",
                    ),
                    rx.button("Save", type="submit", size="1"),
                    spacing="2",
                    align="center",
                    wrap="wrap",
                ),
                on_submit=AdminModelsState.save_fallback,
                key=row["model"]
                + row["fall_through"]
                + row["max_attempts"].to_string()
                + row["attempt_timeout_s"]
                + row["cooldown_s"].to_string(),
            )
        ),
    )


def _margin_row(row: MarginRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["model"]),
        rx.table.cell(rx.code(row["route"], size="1")),
        rx.table.cell(row["price"]),
        rx.table.cell(row["cost"]),
        rx.table.cell(
            rx.cond(
                row["negative"],
                rx.badge(row["margin"], color_scheme="red"),
                rx.badge(row["margin"], color_scheme="green"),
            )
        ),
    )


def admin_models_page() -> rx.Component:
    return page_layout(
        admin_nav(),
        rx.heading("Prices and margins", size="7"),
        rx.text(
            "Customer prices in credits per 1M tokens (input, output, cached input) and per "
            "request. A change applies to requests priced after it; past usage keeps the "
            "price it ran at.",
            size="2",
            color_scheme="gray",
        ),
        error_callout(AdminModelsState.admin_error),
        notice_callout(AdminModelsState.admin_notice),
        _table(
            ("Model", "Input · output · cached · per request"),
            rx.foreach(AdminModelsState.models, _model_row),
        ),
        rx.heading("Scheduled prices", size="5"),
        rx.card(
            rx.form(
                rx.flex(
                    rx.select(AdminModelsState.model_names, name="model", placeholder="model"),
                    rx.input(name="effective_at", type="datetime-local", size="2", required=True),
                    rx.text("UTC", size="1", color_scheme="gray"),
                    rx.input(name="input", placeholder="input", size="2", width="7em"),
                    rx.input(name="output", placeholder="output", size="2", width="7em"),
                    rx.input(name="cached", placeholder="cached", size="2", width="7em"),
                    rx.input(name="fee", placeholder="per request", size="2", width="7em"),
                    rx.checkbox("accept a loss", name="acknowledge", size="1"),
                    rx.button("Schedule", type="submit"),
                    spacing="2",
                    align="center",
                    wrap="wrap",
                ),
                on_submit=AdminModelsState.schedule,
                reset_on_submit=True,
            ),
            width="100%",
        ),
        rx.cond(
            AdminModelsState.schedules.length() > 0,
            _table(
                (
                    "Takes effect",
                    "Model",
                    "Input / output / cached / per request",
                    "Status",
                    "By",
                    "",
                ),
                rx.foreach(AdminModelsState.schedules, _schedule_row),
            ),
        ),
        rx.heading("Routes: order, share and upstream cost", size="5"),
        _table(
            ("Model", "Route", "Priority · weight · cost in · out · cached · per request"),
            rx.foreach(AdminModelsState.routes, _route_row),
        ),
        rx.heading("Fallback policies", size="5"),
        _table(
            ("Model", "Fall through on · attempts · attempt timeout (s) · cooldown"),
            rx.foreach(AdminModelsState.policies, _fallback_row),
        ),
        rx.heading("Margin review", size="5"),
        _table(
            ("Model", "Route", "Price", "Cost", "Margin"),
            rx.foreach(AdminModelsState.margin_rows, _margin_row),
        ),
        rx.card(
            rx.plotly(
                data=AdminModelsState.margin_figure,
                use_resize_handler=True,
                style={"width": "100%", "height": "340px"},
            ),
            width="100%",
        ),
    )


def _audit_row(row: AuditRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row["at"], size="1")),
        rx.table.cell(rx.text(row["actor"], size="1")),
        rx.table.cell(rx.code(row["action"], size="1")),
        rx.table.cell(rx.text(row["target"], size="1")),
        rx.table.cell(rx.text(row["before"], size="1")),
        rx.table.cell(rx.text(row["after"], size="1")),
        rx.table.cell(rx.text(row["reason"], size="1")),
    )


def admin_audit_page() -> rx.Component:
    return page_layout(
        admin_nav(),
        rx.flex(
            rx.heading("Audit log", size="7"),
            rx.spacer(),
            rx.input(
                placeholder="Filter by action, target or actor",
                value=AdminAuditState.search,
                on_change=AdminAuditState.set_search.debounce(300),
                width="20em",
            ),
            width="100%",
            align="center",
        ),
        _table(
            ("When (UTC)", "Who", "Action", "Target", "Before", "After", "Reason"),
            rx.foreach(AdminAuditState.entries, _audit_row),
        ),
    )


def _provider_form(row: ProviderRow | None = None) -> rx.Component:
    """Edit a provider (row) or add one (None). The key field is write-only: empty keeps it."""
    name = (
        rx.input(type="hidden", name="name", value=row["name"])
        if row is not None
        else rx.input(name="name", placeholder="name", required=True, size="1", width="9em")
    )
    return rx.form(
        rx.flex(
            name,
            rx.input(
                name="base_url",
                placeholder="https://api.example.com/v1",
                required=True,
                default_value=row["base_url"] if row is not None else "",
                size="1",
                width="18em",
            ),
            rx.input(
                name="api_key",
                type="password",
                size="1",
                width="11em",
                placeholder="key" if row is None else "key (empty: keep)",
            ),
            rx.input(
                name="timeout_s",
                default_value=(row["timeout_s"].to_string() if row is not None else "300"),
                size="1",
                width="5em",
            ),
            rx.checkbox(
                "enabled",
                name="enabled",
                default_checked=row["enabled"] if row is not None else True,
                size="1",
            ),
            rx.button("Save", type="submit", size="1"),
            spacing="2",
            align="center",
            wrap="wrap",
        ),
        on_submit=AdminProvidersState.save,
        reset_on_submit=row is None,
        key=(row["name"] + row["base_url"] + row["timeout_s"].to_string() + row["key_hint"])
        if row is not None
        else "new",
    )


def _provider_row(row: ProviderRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(
            rx.vstack(
                rx.text(row["name"], weight="medium"),
                rx.badge(row["kind"], variant="soft"),
                spacing="1",
            )
        ),
        rx.table.cell(
            rx.vstack(
                rx.code(row["key_hint"], size="1"),
                rx.text(row["headers_hint"], size="1", color_scheme="gray"),
                spacing="1",
            )
        ),
        rx.table.cell(
            rx.cond(
                row["kind"] == "sandbox",
                rx.text("built in", size="1", color_scheme="gray"),
                _provider_form(row),
            )
        ),
        rx.table.cell(
            rx.button(
                "Test connection",
                size="1",
                variant="soft",
                on_click=AdminProvidersState.check(row["name"]),
            )
        ),
    )


def admin_providers_page() -> rx.Component:
    return page_layout(
        admin_nav(),
        rx.heading("Providers", size="7"),
        rx.text(
            "Upstream APIs and their keys. Keys are stored encrypted and never shown again; "
            "base URLs on private networks need CREDITDASH_ALLOW_PRIVATE_UPSTREAMS. Models "
            "and routes come from `creditdash catalog import`.",
            size="2",
            color_scheme="gray",
        ),
        error_callout(AdminProvidersState.admin_error),
        notice_callout(AdminProvidersState.admin_notice),
        _table(
            ("Provider", "Key", "Base URL · key · timeout (s) · enabled", ""),
            rx.foreach(AdminProvidersState.providers, _provider_row),
        ),
        rx.card(
            rx.vstack(rx.heading("Add a provider", size="4"), _provider_form(None), spacing="2"),
            width="100%",
        ),
    )


def _request_row(row: AdminRequestRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row["at"], size="1")),
        rx.table.cell(rx.code(row["id"], size="1")),
        rx.table.cell(rx.text(row["customer_id"], size="1")),
        rx.table.cell(row["model"]),
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
        _table(
            (
                "Time (UTC)",
                "Request",
                "Customer",
                "Model",
                "Provider",
                "Status",
                "Tokens",
                "Charged",
                "Unbilled",
                "Upstream cost",
                "Latency",
            ),
            rx.foreach(AdminRequestsState.rows, _request_row),
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
        _table(
            ("Number", "Kind", "Issued", "Customer", "Order", "Total", "Tax", ""),
            rx.foreach(AdminSalesState.invoices, _admin_invoice_row),
        ),
    )
