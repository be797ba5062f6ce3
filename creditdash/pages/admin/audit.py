"""The audit log, searchable."""

from __future__ import annotations

import reflex as rx

from creditdash.components.admin_nav import admin_nav
from creditdash.components.layout import page_layout
from creditdash.components.tables import table
from creditdash.state.admin.audit import (
    AdminAuditState,
    AuditRow,
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
        table(
            ("When (UTC)", "Who", "Action", "Target", "Before", "After", "Reason"),
            rx.foreach(AdminAuditState.entries, _audit_row),
            variant="surface",
        ),
    )
