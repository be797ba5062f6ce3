"""The public landing page at the site root: what creditdash is, the packages on sale (from the
live catalog, as the pricing page shows them) and the ways in. Signed-in users go on to their
dashboard (SignInState.redirect_if_signed_in)."""

from __future__ import annotations

import reflex as rx

from creditdash.components.layout import brand
from creditdash.pages.portal.pricing import price_card
from creditdash.routes import FORGOT_PASSWORD_PATH, SIGN_IN_PATH, SIGN_UP_PATH
from creditdash.state.portal.pricing import PricingState

STEPS = [
    (
        "wallet",
        "Buy credits",
        "Pick a package, pay by card or bank transfer; credits arrive "
        "once the payment provider confirms.",
    ),
    (
        "key-round",
        "Create an API key",
        "Per-key limits: requests per minute, concurrency, a monthly cap, the models it may call.",
    ),
    (
        "zap",
        "Call any model",
        "Point an OpenAI or Anthropic SDK at this gateway; every request "
        "shows its tokens and what it cost.",
    ),
]

EXAMPLE = """curl $CREDITDASH_URL/v1/chat/completions \\
  -H "Authorization: Bearer $CREDITDASH_KEY" \\
  -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}'"""


def _header() -> rx.Component:
    return rx.flex(
        brand(),
        rx.spacer(),
        rx.link(
            "Pricing", href="/pricing", size="2", display=rx.breakpoints(initial="none", sm="block")
        ),
        rx.link(rx.button("Sign in", variant="soft"), href=SIGN_IN_PATH, id="landing-sign-in"),
        rx.link(rx.button("Sign up"), href=SIGN_UP_PATH, id="landing-sign-up"),
        spacing="3",
        padding="1em 1.5em",
        align="center",
        border_bottom=f"1px solid {rx.color('gray', 5)}",
        background=rx.color("gray", 1),
    )


def _hero() -> rx.Component:
    return rx.vstack(
        rx.heading(
            "Prepaid credits for an OpenAI- and Anthropic-compatible AI gateway",
            size=rx.breakpoints(initial="7", sm="8"),
        ),
        rx.text(
            "One endpoint in front of many model providers. Your team buys credits up front, "
            "calls models with its own API keys, and sees every request's cost: no surprise "
            "bills, budgets that hold, invoices with the right tax.",
            size="4",
            color_scheme="gray",
        ),
        rx.flex(
            rx.link(rx.button("Create a workspace", size="3"), href=SIGN_UP_PATH),
            rx.link(rx.button("See the packages", size="3", variant="soft"), href="#packages"),
            spacing="3",
            wrap="wrap",
        ),
        spacing="4",
        width="100%",
        max_width="46em",
    )


def _steps() -> rx.Component:
    return rx.grid(
        *[
            rx.card(
                rx.vstack(
                    rx.icon(icon, size=22, color=rx.color("iris", 10)),
                    rx.text(title, weight="bold"),
                    rx.text(text, size="2", color_scheme="gray"),
                    spacing="2",
                )
            )
            for icon, title, text in STEPS
        ],
        columns=rx.breakpoints(initial="1", sm="3"),
        spacing="4",
        width="100%",
    )


def _footer() -> rx.Component:
    return rx.flex(
        rx.link("Sign in", href=SIGN_IN_PATH, size="2"),
        rx.link("Sign up", href=SIGN_UP_PATH, size="2"),
        rx.link("Forgot your password?", href=FORGOT_PASSWORD_PATH, size="2"),
        rx.link("Pricing and terms", href="/pricing", size="2"),
        spacing="5",
        wrap="wrap",
        padding_top="1.5em",
        border_top=f"1px solid {rx.color('gray', 5)}",
        width="100%",
    )


def landing_page() -> rx.Component:
    return rx.box(
        _header(),
        rx.container(
            rx.vstack(
                _hero(),
                _steps(),
                rx.box(
                    rx.code_block(EXAMPLE, language="bash", wrap_long_lines=True),
                    width="100%",
                    overflow_x="auto",
                ),
                rx.heading("Packages", size="6", id="packages", margin_top="0.5em"),
                rx.cond(
                    PricingState.cards.length() > 0,
                    rx.flex(
                        rx.foreach(PricingState.cards, price_card),
                        spacing="4",
                        wrap="wrap",
                        width="100%",
                        id="landing-packages",
                    ),
                    rx.text("No packages are on sale right now.", color_scheme="gray"),
                ),
                rx.text(
                    "Prices are net; tax follows your billing profile and is shown before you "
                    "pay. ",
                    rx.link("Full terms", href="/pricing"),
                    size="2",
                    color_scheme="gray",
                ),
                _footer(),
                spacing="6",
                width="100%",
            ),
            size="4",
            padding_y="2.5em",
            padding_x="1em",
        ),
        min_height="100vh",
        background=rx.color("gray", 2),
        id="landing",
    )
