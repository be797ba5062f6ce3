"""The public pricing page, generated from the live packages and settings."""

from __future__ import annotations

import asyncio
from typing import TypedDict
from urllib.parse import urlencode

import reflex as rx

from creditdash.billing.payments import packages, refunds
from creditdash.core import db
from creditdash.core.money import format_minor
from creditdash.core.numbers import package_credits_text
from creditdash.core.settings import get_settings
from creditdash.routes import sign_up_page
from creditdash.state.base import SessionState


class PriceCard(TypedDict):
    name: str
    description: str
    price: str
    credits: str
    bonus: str
    per_credit: str
    manual_only: bool
    # Checkout of this package for the signed-in; sign-up that continues to it for visitors.
    href: str
    signup_href: str


def _cards() -> list[PriceCard]:
    with db.session_scope(readonly=True) as session:
        cards = []
        for p in packages.list_packages(session, active_only=True):
            total = p.credits_micros + p.bonus_micros
            # Display only: what one credit costs in this package, to the cent (rounded down).
            per_credit_minor = p.unit_price_minor * 1_000_000 // total
            cards.append(
                PriceCard(
                    name=p.name,
                    description=p.description,
                    price=f"{format_minor(p.unit_price_minor, p.currency)} {p.currency}",
                    credits=package_credits_text(p.credits_micros),
                    bonus=package_credits_text(p.bonus_micros),
                    per_credit=f"{format_minor(per_credit_minor, p.currency)} {p.currency}",
                    manual_only=p.manual_only,
                    href="/billing?" + urlencode({"package": p.name}),
                    signup_href=sign_up_page(p.name),
                )
            )
        return cards


class PricingState(SessionState):
    cards: list[PriceCard] = []
    signed_in: bool = False

    @rx.event
    async def load(self) -> None:
        self.signed_in = await self._signed_in() is not None
        self.cards = await asyncio.to_thread(_cards)

    @rx.var
    def terms(self) -> list[str]:
        s = get_settings()
        return [
            "Prices are net; taxes follow your billing profile (VAT, GST or reverse charge) "
            "and are shown before you pay.",
            "1 credit pays for model usage at the published per-model prices; every request "
            "shows what it cost.",
            refunds.policy_text(s),
            f"Terms version {s.terms_version}; the version you accept is recorded on your order.",
        ]
