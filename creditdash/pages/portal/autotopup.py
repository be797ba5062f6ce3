"""Automatic top-ups (/billing/autotopup): save a card with consent, the rule with its caps,
and the automatic orders."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import (
    can,
    error_callout,
    field,
    loading,
    notice_callout,
    page_layout,
)
from creditdash.components.tables import table
from creditdash.state.portal.autotopup import AttemptRow, AutoTopupState

S = AutoTopupState


def card_panel() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Saved card", size="5"),
            rx.cond(
                S.has_card,
                rx.vstack(
                    rx.text(S.card, weight="bold", id="saved-card"),
                    rx.text(S.consent_text, size="2", color_scheme="gray", id="consent-text"),
                    rx.text(S.consent_when, size="1", color_scheme="gray"),
                    rx.cond(
                        can("autotopup.manage"),
                        rx.button(
                            "Remove card",
                            on_click=S.remove_card,
                            color_scheme="red",
                            variant="soft",
                            id="remove-card",
                        ),
                    ),
                    spacing="2",
                ),
                rx.text("No card is saved.", size="2", color_scheme="gray"),
            ),
            rx.cond(
                can("autotopup.manage"),
                rx.vstack(
                    rx.checkbox(
                        rx.text(
                            "I authorise creditdash to save a card and charge it automatically, "
                            "as set in the rule below; I can remove it or turn the rule off "
                            "at any time.",
                            size="2",
                        ),
                        checked=S.accept_consent,
                        on_change=S.set_accept_consent,
                        id="accept-consent",
                    ),
                    rx.button(
                        rx.icon("credit-card", size=16),
                        rx.cond(S.has_card, "Replace card", "Save a card"),
                        on_click=S.save_card,
                        loading=S.busy,
                        id="save-card",
                    ),
                    spacing="2",
                ),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def rule_panel() -> rx.Component:
    return rx.card(
        rx.form(
            rx.vstack(
                rx.flex(
                    rx.heading("Rule", size="5"),
                    rx.cond(
                        S.has_rule,
                        rx.badge(
                            S.rule_status,
                            color_scheme=rx.cond(S.rule_status == "active", "green", "amber"),
                            id="rule-status",
                        ),
                    ),
                    spacing="3",
                    align="center",
                ),
                rx.cond(S.paused_reason != "", rx.text(S.paused_reason, size="2", color="red")),
                rx.flex(
                    field(
                        "When available credits fall below",
                        rx.input(name="below", default_value=S.below, required=True, id="below"),
                    ),
                    field(
                        "Buy package",
                        rx.select(S.package_names, name="package", default_value=S.package),
                    ),
                    field("Quantity", rx.input(name="quantity", default_value=S.quantity)),
                    spacing="3",
                    wrap="wrap",
                    width="100%",
                ),
                rx.flex(
                    field(
                        "Monthly cap (credits, empty: none)",
                        rx.input(name="monthly_cap", default_value=S.monthly_cap),
                    ),
                    field(
                        "Daily cap (credits, empty: none)",
                        rx.input(name="daily_cap", default_value=S.daily_cap),
                    ),
                    field(
                        "Cool-down between top-ups (seconds)",
                        rx.input(name="cooldown_s", default_value=S.cooldown_s, id="cooldown"),
                    ),
                    spacing="3",
                    wrap="wrap",
                    width="100%",
                ),
                rx.text(
                    "Bought automatically this month: ",
                    S.month_spent,
                    " credits; today: ",
                    S.day_spent,
                    " credits. The rule pauses after 3 failed payments in a row.",
                    size="1",
                    color_scheme="gray",
                ),
                rx.cond(
                    can("autotopup.manage"),
                    rx.flex(
                        rx.button("Save and turn on", type="submit", id="save-rule"),
                        rx.cond(
                            S.has_rule & (S.rule_status == "paused"),
                            rx.button("Resume", on_click=S.resume, variant="soft", type="button"),
                        ),
                        rx.cond(
                            S.has_rule & (S.rule_status != "disabled"),
                            rx.button(
                                "Turn off",
                                on_click=S.turn_off,
                                variant="soft",
                                color_scheme="gray",
                                type="button",
                                id="turn-off",
                            ),
                        ),
                        spacing="3",
                    ),
                ),
                spacing="3",
                width="100%",
            ),
            on_submit=S.save_rule,
            reset_on_submit=False,
            key=S.workspace_id + S.rule_status + S.below,
        ),
        width="100%",
    )


def attempt_row(row: AttemptRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row["created"], size="1")),
        rx.table.cell(rx.code(row["order_id"], size="1")),
        rx.table.cell(row["credits"]),
        rx.table.cell(row["amount"]),
        rx.table.cell(
            rx.badge(
                row["status"].replace("_", " "),
                color_scheme=rx.cond(row["status"] == "succeeded", "green", "gray"),
            )
        ),
        rx.table.cell(rx.text(row["failure"], size="1")),
        class_name="autotopup-attempt",
    )


def pay_panel() -> rx.Component:
    return rx.cond(
        S.pay_order != "",
        rx.callout(
            rx.flex(
                rx.text("An automatic top-up did not go through. Pay for the same package now:"),
                rx.button("Pay now", on_click=S.pay_now, size="2", id="pay-now"),
                spacing="3",
                align="center",
                wrap="wrap",
            ),
            icon="triangle_alert",
            color_scheme="amber",
            width="100%",
        ),
    )


def autotopup_page() -> rx.Component:
    return page_layout(
        rx.moment(interval=2000, on_change=S.tick, display="none"),
        rx.flex(
            rx.heading("Automatic top-ups", size="7"),
            rx.link("Back to billing", href="/billing"),
            justify="between",
            align="center",
            width="100%",
        ),
        notice_callout(S.notice),
        error_callout(S.error),
        loading(
            S.loaded,
            pay_panel(),
            card_panel(),
            rule_panel(),
            rx.card(
                rx.vstack(
                    rx.heading("Automatic orders", size="5"),
                    table(
                        ("When", "Order", "Credits", "Amount", "Status", "Why"),
                        rx.foreach(S.history, attempt_row),
                    ),
                    width="100%",
                ),
                width="100%",
            ),
        ),
    )
