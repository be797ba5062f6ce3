"""API keys: create with optional limits (shown once, with a copy button), revoke."""

from __future__ import annotations

import reflex as rx

from creditdash.components.confirm import confirm_dialog
from creditdash.components.layout import (
    can,
    error_callout,
    field,
    loading,
    notice_callout,
    page_layout,
    shown_once_dialog,
)
from creditdash.state.portal.keys import CREATE_FORM_ID, KeyRow, KeysState


def _error_for(name: str) -> rx.Var:
    """The create form's refusal when it is about this field ("" otherwise)."""
    return rx.cond(KeysState.error_field == name, KeysState.error, "")


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
                        _error_for("name"),
                    ),
                    field(
                        "Requests per minute",
                        rx.input(name="rpm", placeholder="no limit", input_mode="numeric"),
                        _error_for("rpm"),
                    ),
                    field(
                        "Concurrent requests",
                        rx.input(name="concurrency", placeholder="no limit"),
                        _error_for("concurrency"),
                    ),
                    field(
                        "Monthly cap (credits)",
                        rx.input(name="monthly_cap", placeholder="no cap"),
                        _error_for("monthly_cap"),
                    ),
                    field(
                        "Models (comma-separated)",
                        rx.input(name="models", placeholder="all models"),
                        _error_for("models"),
                    ),
                    spacing="3",
                    wrap="wrap",
                    width="100%",
                ),
                error_callout(rx.cond(KeysState.error_field == "", KeysState.error, "")),
                rx.button("Create key", type="submit", id="create-key"),
                spacing="3",
                width="100%",
            ),
            on_submit=KeysState.create,
            # Kept on a refusal; create() empties it once the key is made.
            reset_on_submit=False,
            id=CREATE_FORM_ID,
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
                        on_click=KeysState.ask_revoke(row["id"]),
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
        notice_callout(KeysState.notice),
        new_key_dialog(),
        confirm_dialog(
            title="Revoke this key?",
            text=KeysState.confirm_text,
            action="Revoke key",
            on_confirm=KeysState.confirm_revoke,
            on_cancel=KeysState.cancel_confirm,
            confirm_id="confirm-revoke",
        ),
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
