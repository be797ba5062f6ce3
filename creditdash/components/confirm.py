"""The one confirmation dialog every destructive action goes through (refunds, debits,
suspensions, key revocations, member removals).

The state holds what is about to happen (a "confirm_text" var, "" when nothing is pending) and
does the write only in its confirm handler; the handler that opened the dialog writes nothing.
"""

from __future__ import annotations

from typing import Any

import reflex as rx


def confirm_dialog(
    *,
    title: rx.Var | str,
    text: rx.Var | str,
    action: rx.Var | str,
    on_confirm: Any,
    on_cancel: Any,
    confirm_id: str = "confirm-action",
) -> rx.Component:
    """Open while `text` is set: Cancel (or Escape) calls on_cancel, the red button on_confirm."""
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title(title),
            rx.alert_dialog.description(text, size="2"),
            rx.flex(
                rx.alert_dialog.cancel(
                    rx.button("Cancel", variant="soft", color_scheme="gray", on_click=on_cancel)
                ),
                rx.alert_dialog.action(
                    rx.button(action, color_scheme="red", on_click=on_confirm, id=confirm_id)
                ),
                spacing="3",
                justify="end",
                margin_top="1em",
            ),
            on_escape_key_down=on_cancel,
            max_width="30em",
        ),
        open=text != "",
    )
