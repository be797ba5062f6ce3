"""Overview: live balance, spend today and this month, charts of spend and tokens."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import error_callout, field, loading, page_layout, stat_card
from creditdash.state.portal.overview import RANGES, OverviewState


def budget_card() -> rx.Component:
    """The monthly budget: a bar of spent against it, and (for members allowed
    budgets.manage) the form that sets it."""
    card = OverviewState.budget
    return rx.card(
        rx.vstack(
            rx.heading("Monthly budget", size="4"),
            rx.cond(
                card["set"],
                rx.vstack(
                    rx.text(
                        card["spent"], " of ", card["budget"], " credits spent (",
                        card["percent"].to_string(), "%), ", card["kind"], " budget",
                        id="budget-summary",
                    ),
                    rx.progress(value=card["bar"], max=100, width="100%", id="budget-bar"),
                    rx.text(
                        "Held by requests in flight: ", card["held"], ". Alerts at ",
                        card["thresholds"], "; low-balance alert: ", card["low_balance"],
                        ". Resets on ", card["resets"], ".",
                        size="2", color_scheme="gray",
                    ),
                    width="100%",
                ),
                rx.text("No budget is set for this workspace.", color_scheme="gray"),
            ),
            rx.cond(
                OverviewState.can_manage_budget,
                rx.form(
                    rx.flex(
                        field("Monthly budget (credits)",
                              rx.input(name="monthly", placeholder="none", id="budget-monthly",
                                       default_value=card["form_monthly"])),
                        field("Alert at percents",
                              rx.input(name="thresholds", default_value=card["form_thresholds"])),
                        field("Low-balance alert (credits)",
                              rx.input(name="low_balance", placeholder="off",
                                       default_value=card["form_low_balance"])),
                        rx.checkbox("Hard: refuse requests once reached", name="hard",
                                    default_checked=card["form_hard"]),
                        spacing="3", wrap="wrap", width="100%", align="end",
                    ),
                    error_callout(OverviewState.budget_error),
                    error_callout(OverviewState.role_refusal),
                    rx.text(OverviewState.budget_saved, size="2", color_scheme="green"),
                    rx.button("Save budget", type="submit", id="save-budget"),
                    on_submit=OverviewState.save_budget,
                    # A new key when the saved budget changes: the form starts again from it.
                    key=card["form_key"],
                ),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
        id="budget-card",
    )  # fmt: skip


def home_page() -> rx.Component:
    return page_layout(
        # A client-side timer: while this page is open, ask the server every 2 s.
        rx.moment(interval=2000, on_change=OverviewState.tick, display="none"),
        rx.flex(
            rx.heading(f"Welcome, {OverviewState.user_name}", size="7"),
            rx.spacer(),
            rx.text(OverviewState.workspace_name, size="2", color_scheme="gray"),
            align="center",
            width="100%",
            wrap="wrap",
        ),
        rx.cond(
            OverviewState.no_workspace,
            rx.callout(
                "You are not a member of any workspace yet. Ask its owner for an invitation.",
                icon="info",
            ),
            loading(
                OverviewState.loaded,
                rx.cond(
                    OverviewState.low_balance,
                    rx.callout(
                        rx.text(
                            "Your available balance is low; requests are refused at zero. ",
                            rx.link("Buy credits", href="/billing"),
                        ),
                        icon="triangle_alert",
                        color_scheme="amber",
                        width="100%",
                        id="low-balance",
                    ),
                ),
                rx.flex(
                    stat_card("Balance (credits)", OverviewState.balance, id="balance"),
                    stat_card("Held by requests in flight", OverviewState.held, id="held"),
                    stat_card(
                        "Available",
                        OverviewState.available,
                        OverviewState.available_money,
                        id="available",
                    ),
                    spacing="4",
                    wrap="wrap",
                    width="100%",
                ),
                rx.flex(
                    stat_card("Spent today", OverviewState.today, id="spent-today"),
                    stat_card("Spent this month", OverviewState.month, id="spent-month"),
                    stat_card("Requests today", OverviewState.requests_today.to_string()),
                    spacing="4",
                    wrap="wrap",
                    width="100%",
                ),
                budget_card(),
                rx.card(
                    rx.vstack(
                        rx.flex(
                            rx.heading("Usage", size="4"),
                            rx.spacer(),
                            rx.segmented_control.root(
                                *[rx.segmented_control.item(k, value=k) for k in RANGES],
                                value=OverviewState.range_label,
                                on_change=OverviewState.set_range,
                            ),
                            width="100%",
                            align="center",
                        ),
                        rx.cond(
                            OverviewState.has_usage,
                            rx.flex(
                                rx.box(
                                    rx.plotly(
                                        data=OverviewState.spend_figure,
                                        use_resize_handler=True,
                                        style={"width": "100%", "height": "320px"},
                                    ),
                                    flex="1",
                                    min_width="280px",
                                    id="spend-chart",
                                ),
                                rx.box(
                                    rx.plotly(
                                        data=OverviewState.tokens_figure,
                                        use_resize_handler=True,
                                        style={"width": "100%", "height": "320px"},
                                    ),
                                    flex="1",
                                    min_width="280px",
                                    id="tokens-chart",
                                ),
                                wrap="wrap",
                                width="100%",
                                spacing="4",
                            ),
                            rx.text(
                                "No requests in this range yet. Create an API key and call "
                                "the gateway; charts fill in as requests are metered.",
                                color_scheme="gray",
                                id="no-usage",
                            ),
                        ),
                        spacing="3",
                        width="100%",
                    ),
                    width="100%",
                ),
            ),
        ),
    )
