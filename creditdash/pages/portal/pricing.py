"""Public pricing, generated from the live packages and settings."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import brand
from creditdash.routes import SIGN_IN_PATH
from creditdash.state.portal.pricing import PriceCard, PricingState

INCLUDED = [
    ("Usage credits", "Prepaid credits, charged per request at published per-model prices."),
    ("Checkout", "Pay by card through a hosted payment page, or by bank transfer."),
    ("Invoices", "Numbered invoices with tax by your billing profile, PDF and CSV statements."),
    ("Provider setup", "One OpenAI-compatible endpoint in front of many upstream providers."),
    ("Margin control", "Operators review prices against upstream costs before traffic flows."),
    ("Settlement", "Balance credited only on the provider's signed confirmation, exactly once."),
]


def price_card(card: PriceCard) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading(card["name"], size="5"),
            rx.text(card["price"], size="6", weight="bold"),
            rx.text(
                card["credits"],
                " credits",
                rx.cond(card["bonus"] != "0", " + " + card["bonus"] + " bonus", ""),
                size="3",
            ),
            rx.text("≈ ", card["per_credit"], " per credit", size="1", color_scheme="gray"),
            rx.text(card["description"], size="2", color_scheme="gray", min_height="3em"),
            rx.cond(
                card["manual_only"],
                rx.link(
                    rx.button("Request a contract order", variant="soft", width="100%"),
                    href=rx.cond(PricingState.signed_in, card["href"], card["signup_href"]),
                    width="100%",
                ),
                rx.link(
                    rx.button(rx.cond(PricingState.signed_in, "Buy", "Get started"), width="100%"),
                    href=rx.cond(PricingState.signed_in, card["href"], card["signup_href"]),
                    width="100%",
                ),
            ),
            spacing="2",
            width="100%",
        ),
        min_width="14em",
        flex="1",
    )


def pricing_page() -> rx.Component:
    return rx.box(
        rx.flex(
            brand(),
            rx.spacer(),
            rx.cond(
                PricingState.signed_in,
                rx.link(rx.button("Dashboard", variant="soft"), href="/home"),
                rx.flex(
                    rx.link(rx.button("Sign in", variant="soft"), href=SIGN_IN_PATH),
                    rx.link(rx.button("Sign up"), href="/signup"),
                    spacing="2",
                ),
            ),
            padding="1em 1.5em",
            align="center",
            border_bottom=f"1px solid {rx.color('gray', 5)}",
            background=rx.color("gray", 1),
        ),
        rx.container(
            rx.vstack(
                rx.heading("Pay for AI usage in credits", size="8"),
                rx.text(
                    "Buy a credit package, call any model through one OpenAI-compatible "
                    "endpoint, and see every request's cost.",
                    size="4",
                    color_scheme="gray",
                ),
                rx.flex(
                    rx.foreach(PricingState.cards, price_card),
                    spacing="4",
                    wrap="wrap",
                    width="100%",
                ),
                rx.heading("Included", size="5", margin_top="1em"),
                rx.grid(
                    *[
                        rx.vstack(
                            rx.text(title, weight="bold"),
                            rx.text(text, size="2", color_scheme="gray"),
                            spacing="1",
                        )
                        for title, text in INCLUDED
                    ],
                    columns=rx.breakpoints(initial="1", sm="2", md="3"),
                    spacing="4",
                    width="100%",
                ),
                rx.heading("Commercial terms", size="5", margin_top="1em"),
                rx.unordered_list(rx.foreach(PricingState.terms, rx.list_item)),
                spacing="4",
                width="100%",
            ),
            size="4",
            padding_y="2em",
            padding_x="1em",
        ),
        min_height="100vh",
        background=rx.color("gray", 2),
    )
