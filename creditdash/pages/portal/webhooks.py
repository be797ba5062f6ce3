"""Webhooks: endpoints, the add form (the signing secret shown once), and a delivery log."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import (
    error_callout,
    field,
    loading,
    notice_callout,
    page_layout,
    shown_once_dialog,
)
from creditdash.core.outbox import WEBHOOK_EVENT_TYPES
from creditdash.state.portal.webhooks import (
    EVENT_FIELD,
    DeliveryRow,
    EndpointRow,
    WebhooksState,
)


def secret_dialog() -> rx.Component:
    return shown_once_dialog(
        title="Your signing secret",
        description=(
            "Copy it now: it cannot be shown again. Verify each request's webhook-signature "
            "with it (the Standard Webhooks scheme)."
        ),
        value=WebhooksState.new_secret,
        on_done=WebhooksState.forget_secret,
        value_id="webhook-secret",
        done_id="secret-done",
    )


def add_form() -> rx.Component:
    return rx.card(
        rx.form(
            rx.vstack(
                rx.heading("Add an endpoint", size="4"),
                rx.flex(
                    field(
                        "URL (https)",
                        rx.input(
                            name="url",
                            placeholder="https://example.com/webhooks",
                            required=True,
                            id="webhook-url",
                        ),
                    ),
                    field("Description", rx.input(name="description", placeholder="optional")),
                    spacing="3",
                    wrap="wrap",
                    width="100%",
                ),
                rx.flex(
                    *[
                        rx.checkbox(event_type, name=EVENT_FIELD + event_type)
                        for event_type in WEBHOOK_EVENT_TYPES
                    ],
                    spacing="4",
                    wrap="wrap",
                ),
                error_callout(WebhooksState.error),
                notice_callout(WebhooksState.notice),
                rx.button("Add endpoint", type="submit", id="add-webhook"),
                spacing="3",
                width="100%",
            ),
            on_submit=WebhooksState.add,
            reset_on_submit=True,
        ),
        width="100%",
    )


def endpoint_row(row: EndpointRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.vstack(rx.code(row["url"]), rx.text(row["description"], size="1"))),
        rx.table.cell(rx.text(row["events"], size="1")),
        rx.table.cell(
            rx.cond(
                row["enabled"],
                rx.badge("enabled", color_scheme="green"),
                rx.tooltip(
                    rx.badge("disabled", color_scheme="red"), content=row["disabled_reason"]
                ),
            )
        ),
        rx.table.cell(row["failures"]),
        rx.table.cell(
            rx.hstack(
                rx.button(
                    "Log", size="1", variant="soft", on_click=WebhooksState.show_log(row["id"])
                ),
                rx.cond(
                    row["enabled"],
                    rx.button(
                        "Disable",
                        size="1",
                        variant="soft",
                        on_click=WebhooksState.disable(row["id"]),
                    ),
                    rx.button(
                        "Enable", size="1", variant="soft", on_click=WebhooksState.enable(row["id"])
                    ),
                ),
                rx.button(
                    "Send test",
                    size="1",
                    variant="soft",
                    on_click=WebhooksState.send_test(row["id"]),
                ),
                rx.button(
                    "Rotate secret",
                    size="1",
                    variant="soft",
                    on_click=WebhooksState.rotate(row["id"]),
                ),
                rx.button(
                    "Delete",
                    size="1",
                    color_scheme="red",
                    variant="soft",
                    on_click=WebhooksState.delete(row["id"]),
                ),
                spacing="2",
                wrap="wrap",
            )
        ),
    )


def delivery_row(row: DeliveryRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.code(row["id"])),
        rx.table.cell(row["type"]),
        rx.table.cell(rx.badge(row["status"])),
        rx.table.cell(row["attempts"]),
        rx.table.cell(row["last_status"]),
        rx.table.cell(rx.text(row["last_attempt"], size="1")),
        rx.table.cell(rx.text(row["next_attempt"], size="1")),
        rx.table.cell(
            rx.popover.root(
                rx.popover.trigger(rx.button("Payload", size="1", variant="ghost")),
                rx.popover.content(
                    rx.code_block(row["payload"], language="json"),
                    rx.text(row["error"], size="1", color_scheme="red"),
                ),
            )
        ),
        rx.table.cell(
            rx.button("Resend", size="1", variant="soft", on_click=WebhooksState.resend(row["id"]))
        ),
    )


def _table(headers: tuple[str, ...], body: rx.Component) -> rx.Component:
    return rx.card(
        rx.table.root(
            rx.table.header(rx.table.row(*[rx.table.column_header_cell(h) for h in headers])),
            body,
            width="100%",
        ),
        width="100%",
        overflow_x="auto",
    )


def webhooks_page() -> rx.Component:
    return page_layout(
        rx.heading("Webhooks", size="7"),
        rx.text(
            "Events are POSTed as JSON, signed with the Standard Webhooks scheme, and retried "
            "for up to 24 hours.",
            color_scheme="gray",
        ),
        add_form(),
        secret_dialog(),
        loading(
            WebhooksState.loaded,
            rx.cond(
                WebhooksState.endpoints.length() > 0,
                _table(
                    ("Endpoint", "Events", "State", "Failures", ""),
                    rx.table.body(rx.foreach(WebhooksState.endpoints, endpoint_row)),
                ),
                rx.text("No endpoints yet: add one above.", color_scheme="gray"),
            ),
            rx.cond(
                WebhooksState.selected != "",
                rx.vstack(
                    rx.heading("Deliveries", size="4"),
                    _table(
                        (
                            "webhook-id",
                            "Event",
                            "Status",
                            "Attempts",
                            "Last code",
                            "Last attempt",
                            "Next attempt",
                            "",
                            "",
                        ),
                        rx.table.body(rx.foreach(WebhooksState.deliveries, delivery_row)),
                    ),
                    width="100%",
                ),
            ),
        ),
    )
