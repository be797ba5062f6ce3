"""Prices and margins: model prices, scheduled changes, routes, fallback policies."""

from __future__ import annotations

import reflex as rx

from creditdash.components.admin_nav import admin_nav
from creditdash.components.layout import error_callout, notice_callout, page_layout
from creditdash.components.tables import table
from creditdash.state.admin.prices import (
    AdminModelsState,
    FallbackRow,
    FindingRow,
    MarginRow,
    ModelRow,
    RouteRow,
    ScheduleRow,
)


def _model_row(row: ModelRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row["name"], weight="medium")),
        rx.table.cell(
            rx.form(
                rx.flex(
                    rx.el.input(type="hidden", name="model", value=row["name"]),
                    rx.input(name="input", default_value=row["input"], size="1", width="7em"),
                    rx.input(name="output", default_value=row["output"], size="1", width="7em"),
                    rx.input(name="cached", default_value=row["cached"], size="1", width="7em"),
                    rx.input(
                        name="cache_write",
                        default_value=row["cache_write"],
                        placeholder="= input",
                        size="1",
                        width="7em",
                    ),
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
                    rx.el.input(type="hidden", name="model", value=row["model"]),
                    rx.el.input(type="hidden", name="provider", value=row["provider"]),
                    rx.el.input(type="hidden", name="upstream_model", value=row["upstream_model"]),
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
                    rx.input(
                        name="cache_write",
                        default_value=row["cache_write"],
                        placeholder="= input",
                        **small,
                    ),
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
                    rx.el.input(type="hidden", name="model", value=row["model"]),
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


def _finding_row(row: FindingRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.code(row["route"], size="1")),
        rx.table.cell(
            rx.cond(
                row["kind"] == "unknown_model",
                rx.badge("unknown model", color_scheme="orange"),
                rx.badge("cost change"),
            )
        ),
        rx.table.cell(rx.text(row["change"], size="1")),
        rx.table.cell(rx.text(row["effective_at"], size="1")),
        rx.table.cell(
            rx.flex(
                rx.cond(
                    row["losing"],
                    rx.badge("below cost: " + row["loss_mix"], color_scheme="red"),
                    "",
                ),
                rx.cond(row["closed"], rx.badge("closed until accepted", color_scheme="red"), ""),
                spacing="1",
                wrap="wrap",
            )
        ),
        rx.table.cell(
            rx.flex(
                rx.button(
                    "Accept",
                    size="1",
                    on_click=AdminModelsState.accept_finding(row["id"]),
                ),
                rx.button(
                    "Reject",
                    size="1",
                    variant="soft",
                    color_scheme="red",
                    on_click=AdminModelsState.reject_finding(row["id"]),
                ),
                spacing="2",
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
            "Customer prices in credits per 1M tokens (input, output, cached input, prompt-cache "
            "write; a blank cache write costs input) and per request. A change applies to "
            "requests priced after it; past usage keeps the "
            "price it ran at.",
            size="2",
            color_scheme="gray",
        ),
        error_callout(AdminModelsState.admin_error),
        notice_callout(AdminModelsState.admin_notice),
        table(
            ("Model", "Input · output · cached · cache write · per request"),
            rx.foreach(AdminModelsState.models, _model_row),
            variant="surface",
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
                    rx.input(name="cache_write", placeholder="cache write", size="2", width="7em"),
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
            table(
                (
                    "Takes effect",
                    "Model",
                    "Input / output / cached / per request",
                    "Status",
                    "By",
                    "",
                ),
                rx.foreach(AdminModelsState.schedules, _schedule_row),
                variant="surface",
            ),
        ),
        rx.heading("Price sync", size="5"),
        rx.flex(
            rx.text(
                "Route costs checked against the price data bundled with genai-prices "
                "(`creditdash prices sync`). A route its model's price no longer covers, or "
                "whose model the data does not know, is closed until accepted when "
                "CREDITDASH_PRICE_SYNC_GATE is close. Accept keeps the new cost and reopens "
                "the route; reject keeps the cost before (an unknown model's route stays "
                "closed).",
                size="2",
                color_scheme="gray",
            ),
            rx.button("Sync now", size="2", on_click=AdminModelsState.run_sync),
            spacing="3",
            align="center",
        ),
        rx.cond(
            AdminModelsState.findings.length() > 0,
            table(
                (
                    "Route",
                    "Finding",
                    "Change (credits per 1M tokens)",
                    "Takes effect",
                    "Review",
                    "",
                ),
                rx.foreach(AdminModelsState.findings, _finding_row),
                variant="surface",
            ),
            rx.text("No findings waiting.", size="2"),
        ),
        rx.heading("Routes: order, share and upstream cost", size="5"),
        table(
            (
                "Model",
                "Route",
                "Priority · weight · cost in · out · cached · cache write · per request",
            ),
            rx.foreach(AdminModelsState.routes, _route_row),
            variant="surface",
        ),
        rx.heading("Fallback policies", size="5"),
        table(
            ("Model", "Fall through on · attempts · attempt timeout (s) · cooldown"),
            rx.foreach(AdminModelsState.policies, _fallback_row),
            variant="surface",
        ),
        rx.heading("Margin review", size="5"),
        table(
            ("Model", "Route", "Price", "Cost", "Margin"),
            rx.foreach(AdminModelsState.margin_rows, _margin_row),
            variant="surface",
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
