"""The request log: filters, pages, one request's detail, CSV export."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import (
    NARROW,
    WIDE,
    error_callout,
    field,
    loading,
    only,
    page_layout,
)
from creditdash.state.portal.usage import STATUSES, RequestRow, UsageState


def filters() -> rx.Component:
    return rx.card(
        rx.form(
            rx.flex(
                field(
                    "Model",
                    rx.select.root(
                        rx.select.trigger(placeholder="All models"),
                        rx.select.content(
                            rx.select.item("All models", value="all"),
                            rx.foreach(UsageState.models, lambda m: rx.select.item(m, value=m)),
                        ),
                        name="model",
                        default_value="all",
                    ),
                ),
                field(
                    "Key",
                    rx.select.root(
                        rx.select.trigger(placeholder="All keys"),
                        rx.select.content(
                            rx.select.item("All keys", value="all"),
                            rx.foreach(
                                UsageState.key_options,
                                lambda k: rx.select.item(k["label"], value=k["value"]),
                            ),
                        ),
                        name="key",
                        default_value="all",
                    ),
                ),
                field(
                    "Status",
                    rx.select.root(
                        rx.select.trigger(placeholder="Any status"),
                        rx.select.content(
                            rx.select.item("Any status", value="all"),
                            *[rx.select.item(s.replace("_", " "), value=s) for s in STATUSES],
                        ),
                        name="status",
                        default_value="all",
                    ),
                ),
                field("From", rx.input(type="date", name="first_day")),
                field("To", rx.input(type="date", name="last_day")),
                rx.flex(
                    rx.button("Apply", type="submit"),
                    rx.button(
                        "Clear", type="button", variant="soft", on_click=UsageState.clear_filters
                    ),
                    spacing="2",
                    align="end",
                ),
                spacing="3",
                wrap="wrap",
                align="end",
                width="100%",
            ),
            on_submit=UsageState.apply_filters,
        ),
        width="100%",
    )


def request_row(row: RequestRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row["at"], size="1")),
        rx.table.cell(
            rx.code(
                row["id"],
                # A button-like code, not a link: no navigation that would re-run the page load.
                on_click=UsageState.show(row["id"]),
                cursor="pointer",
                role="button",
            )
        ),
        rx.table.cell(row["model"]),
        rx.table.cell(rx.text(row["protocol"], size="1")),
        rx.table.cell(
            rx.badge(row["status"], color_scheme=rx.cond(row["status"] == "ok", "green", "red"))
        ),
        rx.table.cell(row["tokens"]),
        rx.table.cell(rx.text(row["cost"], font_family="ui-monospace, monospace")),
        rx.table.cell(f"{row['latency_ms']} ms"),
    )


def request_card(row: RequestRow) -> rx.Component:
    """A request on a phone: the row's facts stacked, the id opening the same detail."""
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.badge(
                    row["status"], color_scheme=rx.cond(row["status"] == "ok", "green", "red")
                ),
                rx.text(row["model"], weight="medium", size="2"),
                rx.spacer(),
                rx.text(row["cost"], font_family="ui-monospace, monospace", size="2"),
                width="100%",
                align="center",
            ),
            rx.text(
                row["at"],
                " · ",
                row["tokens"],
                " tokens · ",
                row["latency_ms"],
                " ms",
                size="1",
                color_scheme="gray",
            ),
            rx.code(
                row["id"],
                on_click=UsageState.show(row["id"]),
                cursor="pointer",
                role="button",
                size="1",
            ),
            spacing="1",
            width="100%",
        ),
        width="100%",
        class_name="request-card",
    )


def detail_dialog() -> rx.Component:
    d = UsageState.detail
    facts = [
        ("Time", d["at"]),
        ("Model", d["model"]),
        ("API", d["protocol"]),
        ("Provider", d["provider"]),
        ("Upstream model", d["upstream_model"]),
        ("Status", d["status"]),
        ("HTTP status", d["http_status"].to_string()),
        ("Prompt tokens", d["prompt_tokens"].to_string()),
        ("Completion tokens", d["completion_tokens"].to_string()),
        ("Cached tokens", d["cached_tokens"].to_string()),
        ("Cache-write tokens", d["cache_write_tokens"].to_string()),
        ("Reasoning tokens", d["reasoning_tokens"].to_string()),
        ("Usage source", d["usage_source"]),
        ("Cost (credits)", d["cost"]),
        ("Latency", d["latency_ms"].to_string() + " ms"),
        ("Time to first byte", d["ttfb_ms"] + " ms"),
        ("Attempts", d["attempts"].to_string()),
        ("Attempt log", d["attempts_detail"]),
    ]
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.code(d["id"])),
            rx.data_list.root(
                *[
                    rx.data_list.item(rx.data_list.label(k), rx.data_list.value(v))
                    for k, v in facts
                ],
            ),
            rx.flex(
                rx.dialog.close(rx.button("Close", on_click=UsageState.hide)),
                justify="end",
                margin_top="1em",
            ),
        ),
        open=UsageState.detail.is_not_none(),
    )


def usage_page() -> rx.Component:
    return page_layout(
        rx.flex(
            rx.heading("Usage", size="7"),
            rx.spacer(),
            rx.link(
                rx.button(rx.icon("download", size=16), "Export CSV", variant="soft"),
                href=UsageState.export_url,
                is_external=True,
            ),
            width="100%",
            align="center",
        ),
        filters(),
        error_callout(UsageState.error),
        loading(
            UsageState.loaded,
            rx.cond(
                UsageState.total > 0,
                rx.fragment(
                    only(
                        WIDE,
                        rx.box(
                            rx.card(
                                rx.table.root(
                                    rx.table.header(
                                        rx.table.row(
                                            *[
                                                rx.table.column_header_cell(h)
                                                for h in (
                                                    "Time (UTC)",
                                                    "Request",
                                                    "Model",
                                                    "API",
                                                    "Status",
                                                    "Tokens in + out",
                                                    "Cost",
                                                    "Latency",
                                                )
                                            ]
                                        )
                                    ),
                                    rx.table.body(rx.foreach(UsageState.rows, request_row)),
                                    width="100%",
                                ),
                                width="100%",
                                overflow_x="auto",
                            ),
                            width="100%",
                        ),
                    ),
                    only(
                        NARROW,
                        rx.vstack(
                            rx.foreach(UsageState.rows, request_card), spacing="2", width="100%"
                        ),
                    ),
                ),
                rx.text("No requests match.", color_scheme="gray"),
            ),
            rx.flex(
                rx.button(
                    "Previous",
                    on_click=UsageState.previous_page,
                    variant="soft",
                    disabled=UsageState.page <= 1,
                ),
                rx.text(UsageState.page_label, size="2"),
                rx.button(
                    "Next",
                    on_click=UsageState.next_page,
                    variant="soft",
                    disabled=UsageState.page * 25 >= UsageState.total,
                ),
                spacing="3",
                align="center",
            ),
        ),
        detail_dialog(),
    )
