"""The development inbox: the email outbox, newest first, with each body and a retry."""

from __future__ import annotations

import reflex as rx

from creditdash.components.admin_nav import admin_nav
from creditdash.components.layout import error_callout, notice_callout, page_layout
from creditdash.components.tables import table
from creditdash.state.admin.mail import AdminMailState, MailRow

NOT_SENDING = "Mail is not being sent: CREDITDASH_SMTP_URL is not set. Everything below waits here."
SENDING = "Mail is sent through the SMTP server in CREDITDASH_SMTP_URL."


def _status(row: MailRow) -> rx.Component:
    return rx.badge(
        row["status"],
        color_scheme=rx.match(row["status"], ("sent", "green"), ("failed", "red"), "amber"),
    )


def _mail_row(row: MailRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row["created"], size="1")),
        rx.table.cell(rx.text(row["to"], size="1")),
        rx.table.cell(rx.link(row["subject"], size="1", on_click=AdminMailState.show(row["id"]))),
        rx.table.cell(rx.code(row["kind"], size="1")),
        rx.table.cell(_status(row)),
        rx.table.cell(rx.text(row["attempts"], size="1")),
        rx.table.cell(rx.text(row["last_error"], size="1", color_scheme="red")),
        rx.table.cell(rx.text(row["sent"], size="1")),
        rx.table.cell(
            rx.cond(
                row["status"] != "sent",
                rx.button(
                    "Retry now",
                    size="1",
                    variant="soft",
                    on_click=AdminMailState.retry(row["id"]),
                ),
            )
        ),
    )


def _viewer() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(AdminMailState.viewing_subject),
            rx.box(
                rx.text(AdminMailState.viewing_body, white_space="pre-wrap", size="2"),
                max_height="60vh",
                overflow_y="auto",
            ),
            rx.flex(
                rx.button("Close", variant="soft", on_click=AdminMailState.hide),
                justify="end",
                margin_top="1em",
            ),
        ),
        open=AdminMailState.viewing,
    )


def admin_mail_page() -> rx.Component:
    return page_layout(
        admin_nav(),
        rx.flex(
            rx.heading("Mail outbox", size="7"),
            rx.spacer(),
            rx.select(
                ["pending", "sent", "failed"],
                placeholder="Every status",
                value=AdminMailState.status,
                on_change=AdminMailState.filter_status,
            ),
            width="100%",
            align="center",
        ),
        rx.cond(
            AdminMailState.smtp_configured,
            rx.callout(SENDING, icon="mail", color_scheme="green"),
            rx.callout(NOT_SENDING, icon="info", color_scheme="amber"),
        ),
        error_callout(AdminMailState.admin_error),
        notice_callout(AdminMailState.admin_notice),
        table(
            ("Created (UTC)", "To", "Subject", "Kind", "Status", "Tries", "Last error", "Sent", ""),
            rx.foreach(AdminMailState.rows, _mail_row),
            variant="surface",
        ),
        _viewer(),
    )
