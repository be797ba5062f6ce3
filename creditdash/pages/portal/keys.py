"""API keys: create with optional limits (shown once, with a copy button), revoke."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import (
    can,
    error_callout,
    field,
    loading,
    page_layout,
    shown_once_dialog,
)
from creditdash.state.portal.keys import KeyRow, KeysState


def new_key_dialog() -> rx.Component:
    return shown_once_dialog(
        title="Your new API key",
        description="Copy it now: it is stored only as a hash and cannot be shown again.",
        value=KeysState.new_key,
        on_done=KeysState.forget_new_key,
        value_id="new-key",
        done_id="key-done",
    )


def create_form() -> rx.Component:
    return rx.card(
        rx.form(
            rx.vstack(
                rx.heading("Create a key", size="4"),
                rx.flex(
                    field(
                        "Name",
                        rx.input(
                            name="name", placeholder="production", required=True, id="key-name"
                        ),
                    ),
                    field(
                        "Requests per minute",
                        rx.input(name="rpm", placeholder="no limit", input_mode="numeric"),
                    ),
                    field(
                        "Concurrent requests", rx.input(name="concurrency", placeholder="no limit")
                    ),
                    field(
                        "Monthly cap (credits)", rx.input(name="monthly_cap", placeholder="no cap")
                    ),
                    field(
                        "Models (comma-separated)",
                        rx.input(name="models", placeholder="all models"),
                    ),
                    spacing="3",
                    wrap="wrap",
                    width="100%",
                ),
                error_callout(KeysState.error),
                rx.button("Create key", type="submit", id="create-key"),
                spacing="3",
                width="100%",
            ),
            on_submit=KeysState.create,
            reset_on_submit=True,
        ),
        width="100%",
    )


def key_row(row: KeyRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row["name"], weight="medium")),
        rx.table.cell(rx.code(row["prefix"])),
        rx.table.cell(row["created"]),
        rx.table.cell(row["last_used"]),
        rx.table.cell(rx.text(row["limits"], size="1")),
        rx.table.cell(
            rx.cond(
                row["revoked"],
                rx.badge("revoked", color_scheme="gray"),
                rx.cond(
                    can("keys.manage"),
                    rx.button(
                        "Revoke",
                        size="1",
                        color_scheme="red",
                        variant="soft",
                        on_click=KeysState.revoke(row["id"]),
                    ),
                ),
            )
        ),
    )


def keys_page() -> rx.Component:
    return page_layout(
        rx.heading("API keys", size="7"),
        rx.text(
            "Use a key as the Bearer token with any OpenAI SDK, base URL ",
            rx.code("<this site>/v1"),
            ". Revoked keys stop working within seconds.",
            color_scheme="gray",
        ),
        rx.cond(can("keys.manage"), create_form()),
        new_key_dialog(),
        loading(
            KeysState.loaded,
            rx.cond(
                KeysState.keys.length() > 0,
                rx.card(
                    rx.table.root(
                        rx.table.header(
                            rx.table.row(
                                *[
                                    rx.table.column_header_cell(h)
                                    for h in ("Name", "Key", "Created", "Last used", "Limits", "")
                                ]
                            )
                        ),
                        rx.table.body(rx.foreach(KeysState.keys, key_row)),
                        width="100%",
                    ),
                    width="100%",
                    overflow_x="auto",
                ),
                rx.text("No keys yet: create one above.", color_scheme="gray"),
            ),
        ),
    )
