"""Upstream costs: the providers' own cost reports against what the gateway recorded."""

from __future__ import annotations

import reflex as rx

from creditdash.components.admin_nav import admin_nav
from creditdash.components.layout import error_callout, notice_callout, page_layout
from creditdash.components.tables import table
from creditdash.state.admin.upstream import AdminUpstreamState, DifferenceRow


def _difference_row(row: DifferenceRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["day"]),
        rx.table.cell(rx.code(row["model"], size="1")),
        rx.table.cell(row["reported"]),
        rx.table.cell(row["recorded"]),
        rx.table.cell(rx.badge(row["difference"], color_scheme="red")),
        rx.table.cell(row["requests"]),
    )


def admin_upstream_page() -> rx.Component:
    return page_layout(
        admin_nav(),
        rx.heading("Upstream costs", size="7"),
        rx.text(
            "What each provider's cost report says it charged per UTC day and model, against "
            "the upstream cost the gateway recorded on its requests. Reports are read with the "
            "provider's admin key (`creditdash upstream set-admin-key`) or imported from CSV "
            "(`creditdash upstream import-costs`).",
            size="2",
            color_scheme="gray",
        ),
        error_callout(AdminUpstreamState.admin_error),
        notice_callout(AdminUpstreamState.admin_notice),
        rx.card(
            rx.form(
                rx.flex(
                    rx.select(
                        AdminUpstreamState.providers, name="provider", placeholder="provider"
                    ),
                    rx.input(
                        name="first_day", type="date", default_value=AdminUpstreamState.first_day
                    ),
                    rx.input(
                        name="last_day", type="date", default_value=AdminUpstreamState.last_day
                    ),
                    rx.input(name="tolerance", placeholder="tolerance (credits)", width="10em"),
                    rx.checkbox("fetch the provider's report first", name="fetch", size="1"),
                    rx.button("Compare", type="submit"),
                    spacing="2",
                    align="center",
                    wrap="wrap",
                ),
                on_submit=AdminUpstreamState.compare,
            ),
            width="100%",
        ),
        rx.cond(AdminUpstreamState.summary != "", rx.text(AdminUpstreamState.summary, size="2")),
        rx.cond(
            AdminUpstreamState.differences.length() > 0,
            table(
                ("Day", "Model", "Reported", "Recorded", "Difference", "Requests"),
                rx.foreach(AdminUpstreamState.differences, _difference_row),
                variant="surface",
            ),
        ),
        rx.cond(
            AdminUpstreamState.chart.length() > 0,
            rx.card(
                rx.plotly(
                    data=AdminUpstreamState.figure,
                    use_resize_handler=True,
                    style={"width": "100%", "height": "320px"},
                ),
                width="100%",
            ),
        ),
    )
