"""Automatic top-ups: the saved card and its consent, the rule, and the automatic orders.

Thin: each handler translates the form and calls one service of billing/payments/autotopup*.py
in a worker thread; the rules (consent, caps, the pause) live there.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.billing.payments import autotopup, autotopup_rules, packages
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.errors import CreditdashError
from creditdash.core.money import format_credits, parse_credits
from creditdash.core.numbers import credits_text
from creditdash.state.base import PortalState, Workspace, workspace_event
from creditdash.state.portal import billing_rows


class AttemptRow(TypedDict):
    id: str
    created: str
    status: str
    credits: str
    amount: str
    order_id: str
    failure: str


@dataclass(frozen=True)
class View:
    shown: dict[str, Any]
    packages: list[str]


def _load(customer_id: str) -> View:
    with db.session_scope(readonly=True) as session:
        shown = autotopup_rules.describe(session, customer_id)
        names = [
            p.name
            for p in packages.list_packages(session, active_only=True)
            if p.kind == "standard" and not p.manual_only
        ]
    return View(shown, names)


def _rows(attempts: list[dict[str, Any]]) -> list[AttemptRow]:
    return [
        AttemptRow(
            id=a["attempt_id"],
            created=(a["created_at"] or "")[:16].replace("T", " "),
            status=a["status"],
            credits=a["credits"],
            amount=billing_rows.money(a["amount_minor"], a["currency"]),
            order_id=a["order_id"],
            failure=a["failure_message"] or a["failure_code"],
        )
        for a in attempts
    ]


def _cap_text(micros: int | None) -> str:
    return format_credits(micros) if micros is not None else ""


def _start_setup(customer_id: str, actor: Actor) -> str:
    with db.session_scope() as session:
        method = autotopup_rules.start_setup(
            session, customer_id=customer_id, actor=actor, accept=True
        )
        method_id = method.id
    opened = autotopup.open_setup(method_id, customer_id=customer_id)
    return opened.setup_url or ""


def _save_rule(customer_id: str, actor: Actor, form: dict[str, Any]) -> None:
    def credits(name: str, label: str) -> int | None:
        text = str(form.get(name) or "").strip()
        return parse_credits(text, field=label) if text else None

    cooldown = str(form.get("cooldown_s") or "").strip() or str(autotopup_rules.DEFAULT_COOLDOWN_S)
    quantity = str(form.get("quantity") or "1").strip()
    threshold = credits("below", "threshold")
    data = autotopup_rules.RuleInput(
        threshold_micros=threshold if threshold is not None else 0,
        package_name=str(form.get("package") or ""),
        quantity=int(quantity) if quantity.isascii() and quantity.isdigit() else 0,
        monthly_cap_micros=credits("monthly_cap", "monthly cap"),
        daily_cap_micros=credits("daily_cap", "daily cap"),
        cooldown_s=int(cooldown) if cooldown.isascii() and cooldown.isdigit() else -1,
    )
    with db.session_scope() as session:
        autotopup_rules.set_rule(session, customer_id=customer_id, data=data, actor=actor)


def _remove_card(customer_id: str, actor: Actor) -> bool:
    with db.session_scope() as session:
        return autotopup_rules.remove_method(session, customer_id=customer_id, actor=actor)


def _set_status(customer_id: str, actor: Actor, status: str) -> None:
    with db.session_scope() as session:
        autotopup_rules.set_status(session, customer_id=customer_id, status=status, actor=actor)


def _method_status(customer_id: str, method_id: str) -> str:
    with db.session_scope(readonly=True) as session:
        method = autotopup_rules.active_method(session, customer_id)
        return "active" if method is not None and method.id == method_id else "pending"


def _same_origin(url: str) -> str:
    """The sandbox's hosted pages are served by this app: keep the origin the member is on."""
    for path in ("/sandbox/setup/", "/sandbox/checkout/"):
        if path in url:
            return path + url.split(path, 1)[1]
    return url


class AutoTopupState(PortalState):
    loaded: bool = False
    has_rule: bool = False
    rule_status: str = ""
    below: str = ""
    package: str = ""
    quantity: str = "1"
    monthly_cap: str = ""
    daily_cap: str = ""
    cooldown_s: str = str(autotopup_rules.DEFAULT_COOLDOWN_S)
    failures: int = 0
    paused_reason: str = ""
    has_card: bool = False
    card: str = ""
    consent_text: str = ""
    consent_when: str = ""
    month_spent: str = "0"
    day_spent: str = "0"
    package_names: list[str] = []
    history: list[AttemptRow] = []
    accept_consent: bool = False
    pending_method: str = ""
    pay_order: str = ""
    error: str = ""
    notice: str = ""
    busy: bool = False

    async def _reload(self, where: Workspace) -> None:
        view = await asyncio.to_thread(_load, where.customer_id)
        shown, rule, method = view.shown, view.shown["rule"], view.shown["payment_method"]
        self.package_names = view.packages
        self.has_rule = rule is not None
        if rule is not None:
            self.rule_status = rule["status"]
            self.below = rule["below"]
            self.package = rule["package"]
            self.quantity = str(rule["quantity"])
            self.monthly_cap = _cap_text(rule["monthly_cap_micros"])
            self.daily_cap = _cap_text(rule["daily_cap_micros"])
            self.cooldown_s = str(rule["cooldown_s"])
            self.failures = rule["consecutive_failures"]
            self.paused_reason = rule["paused_reason"]
        elif not self.package and view.packages:
            self.package = view.packages[0]
        self.has_card = method is not None
        if method is not None:
            expiry = (
                f", expires {method['exp_month']:02d}/{method['exp_year']}"
                if (method["exp_month"] and method["exp_year"])
                else ""
            )
            self.card = f"{method['brand'] or 'card'} ending {method['last4'] or '····'}{expiry}"
            self.consent_text = method["consent_text"]
            self.consent_when = (
                f"Consent given by {method['saved_by']} on {method['consent_at'][:16]} UTC "
                f"(terms version {method['consent_terms_version']})."
            )
        self.month_spent = credits_text(shown["month_spent_micros"])
        self.day_spent = credits_text(shown["day_spent_micros"])
        self.history = _rows(shown["attempts"])
        self.loaded = True

    @rx.event
    @workspace_event(permission="billing.read")
    async def load(self, where: Workspace) -> EventSpec | None:
        self.error = self.notice = ""
        self.accept_consent = False
        params = self.router.url.query_parameters
        if params.get("setup") == "done" and params.get("method"):
            self.pending_method = params["method"]
            self.notice = "Saving your card: waiting for the payment provider's confirmation."
        elif params.get("setup") == "cancelled":
            self.notice = "Card setup cancelled; nothing was saved."
        self.pay_order = params.get("pay", "")
        await self._reload(where)
        return None

    @rx.event
    @workspace_event(permission="billing.read")
    async def tick(self, where: Workspace, _now: str = "") -> EventSpec | None:
        """While a card setup is pending, look every 2 s whether its webhook saved it."""
        if not self.pending_method:
            return None
        status = await asyncio.to_thread(_method_status, where.customer_id, self.pending_method)
        if status == "active":
            self.pending_method = ""
            self.notice = "Card saved."
            await self._reload(where)
        return None

    @rx.event
    def set_accept_consent(self, value: bool) -> None:
        self.accept_consent = bool(value)

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="autotopup.manage")
    async def save_card(self, where: Workspace) -> EventSpec | None:
        if not self.accept_consent:
            self.error = "Tick the box to give your consent before saving a card."
            return None
        actor = Actor.user(where.user.user_id, where.user.email)
        self.busy = True
        try:
            url = await asyncio.to_thread(_start_setup, where.customer_id, actor)
        except CreditdashError as exc:
            self.error = exc.message
            return None
        finally:
            self.busy = False
        return rx.call_script(f"window.location.assign({json.dumps(_same_origin(url))})")

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="autotopup.manage")
    async def remove_card(self, where: Workspace) -> EventSpec | None:
        actor = Actor.user(where.user.user_id, where.user.email)
        removed = await asyncio.to_thread(_remove_card, where.customer_id, actor)
        self.notice = "Card removed; automatic top-ups are off." if removed else "No card saved."
        await self._reload(where)
        return None

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="autotopup.manage")
    async def save_rule(self, where: Workspace, form: dict[str, Any]) -> EventSpec | None:
        actor = Actor.user(where.user.user_id, where.user.email)
        try:
            await asyncio.to_thread(_save_rule, where.customer_id, actor, form)
        except CreditdashError as exc:
            self.error = exc.message
            return None
        self.notice = "Automatic top-ups are on."
        await self._reload(where)
        return None

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="autotopup.manage")
    async def turn_off(self, where: Workspace) -> EventSpec | None:
        actor = Actor.user(where.user.user_id, where.user.email)
        try:
            await asyncio.to_thread(_set_status, where.customer_id, actor, "disabled")
        except CreditdashError as exc:
            self.error = exc.message
            return None
        self.notice = "Automatic top-ups are off."
        await self._reload(where)
        return None

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="autotopup.manage")
    async def resume(self, where: Workspace) -> EventSpec | None:
        actor = Actor.user(where.user.user_id, where.user.email)
        try:
            await asyncio.to_thread(_set_status, where.customer_id, actor, "active")
        except CreditdashError as exc:
            self.error = exc.message
            return None
        self.notice = "Automatic top-ups resumed."
        await self._reload(where)
        return None

    @rx.event
    @workspace_event(clearing=("error", "notice"), permission="billing.manage")
    async def pay_now(self, where: Workspace) -> EventSpec | None:
        """A normal checkout for the package of the failed automatic order in ?pay=."""
        actor = Actor.user(where.user.user_id, where.user.email)
        customer_id, order_id = where.customer_id, self.pay_order
        try:
            placed = await asyncio.to_thread(
                lambda: autotopup.pay_on_session(
                    customer_id=customer_id, order_id=order_id, actor=actor
                )
            )
        except CreditdashError as exc:
            self.error = exc.message
            return None
        url = _same_origin(placed.checkout_url or "")
        return rx.call_script(f"window.location.assign({json.dumps(url)})")
