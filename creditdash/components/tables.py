"""The one table frame every list page uses: a header row, a body, scrolling sideways on a
narrow screen instead of squeezing its columns."""

from __future__ import annotations

import reflex as rx


def table(headers: tuple[str, ...], body: rx.Component, *, variant: str = "") -> rx.Component:
    """`variant` is the Radix table variant ("surface" on the admin pages); empty leaves the
    theme's default."""
    style = {"variant": variant} if variant else {}
    return rx.box(
        rx.table.root(
            rx.table.header(rx.table.row(*[rx.table.column_header_cell(h) for h in headers])),
            rx.table.body(body),
            width="100%",
            **style,
        ),
        width="100%",
        overflow_x="auto",
    )
