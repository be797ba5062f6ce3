"""Upstream providers: endpoints, keys, a connection check."""

from __future__ import annotations

import reflex as rx

from creditdash.components.admin_nav import admin_nav
from creditdash.components.layout import error_callout, notice_callout, page_layout
from creditdash.components.tables import table
from creditdash.state.admin.providers import (
    AdminProvidersState,
    ProviderRow,
)


def _provider_form(row: ProviderRow | None = None) -> rx.Component:
    """Edit a provider (row) or add one (None). The key field is write-only: empty keeps it."""
    name = (
        rx.el.input(type="hidden", name="name", value=row["name"])
        if row is not None
        else rx.input(name="name", placeholder="name", required=True, size="1", width="9em")
    )
    # The wire an upstream speaks is chosen when it is added and kept on every later save.
    kind = (
        rx.el.input(type="hidden", name="kind", value=row["kind"])
        if row is not None
        else rx.select(["openai", "anthropic"], name="kind", default_value="openai", size="1")
    )
    return rx.form(
        rx.flex(
            name,
            kind,
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
                row["kind"].contains("sandbox"),
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
            "Upstream APIs and their keys: OpenAI-compatible ones, or Anthropic's Messages API "
            "(base URL with /v1, e.g. https://api.anthropic.com/v1). Keys are stored "
            "encrypted and never shown again; "
            "base URLs on private networks need CREDITDASH_ALLOW_PRIVATE_UPSTREAMS. Models "
            "and routes come from `creditdash catalog import`.",
            size="2",
            color_scheme="gray",
        ),
        error_callout(AdminProvidersState.admin_error),
        notice_callout(AdminProvidersState.admin_notice),
        table(
            ("Provider", "Key", "Base URL · key · timeout (s) · enabled", ""),
            rx.foreach(AdminProvidersState.providers, _provider_row),
            variant="surface",
        ),
        rx.card(
            rx.vstack(rx.heading("Add a provider", size="4"), _provider_form(None), spacing="2"),
            width="100%",
        ),
    )
