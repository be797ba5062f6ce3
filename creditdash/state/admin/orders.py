"""Payment orders awaiting an admin: approve or reject a bank transfer, refund a paid order.

Every handler is an @admin_event: the admin role is checked on the server first (state/base.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import TypedDict

import reflex as rx
from reflex.event import EventSpec

from creditdash.billing.payments import manual, orders, refunds
from creditdash.billing.payments.models import Refund
from creditdash.core import db
from creditdash.core.audit import Actor
from creditdash.core.errors import CreditdashError, ValidationFailed
from creditdash.core.money import format_minor
from creditdash.core.numbers import credits_text, minor_text
from creditdash.state import forms
from creditdash.state.base import AdminBase, admin_event, with_session

ORDER_FILTERS = [
    "awaiting_payment",
    "paid",
    "partially_refunded",
    "refunded",
    "cancelled",
    "expired",
    "all",
]


class AdminOrderRow(TypedDict):
    id: str
    customer_id: str
    created: str
    package: str
    gross: str
    currency: str
    status: str
    method: str
    reference: str
    maker: str
    refundable: bool


def _orders(status: str) -> list[AdminOrderRow]:
    with db.session_scope(readonly=True) as session:
        found = orders.list_orders(session, status=None if status == "all" else status, limit=200)
        return [
            AdminOrderRow(
                id=o.id,
                customer_id=o.customer_id,
                created=o.created_at.strftime("%Y-%m-%d %H:%M"),
                package=f"{o.package_name} x{o.quantity}",
                gross=format_minor(o.gross_minor, o.currency),
                currency=o.currency,
                status=o.status,
                method=o.method,
                reference=o.transfer_reference or o.payment_reference or "",
                maker=o.created_by_label,
                refundable=o.status in orders.REFUNDABLE,
            )
            for o in found
        ]


def refund_form_id(order_id: str) -> str:
    return f"refund-{order_id}"


class AdminOrdersState(AdminBase):
    rows: list[AdminOrderRow] = []
    status_filter: str = "awaiting_payment"
    # A fresh refund id per opened refund form: a double submit refunds once.
    refund_key: str = ""
    # The pending refund's confirmation ("" when none is pending) and its form (server only).
    confirm_text: str = ""
    _pending_form: dict[str, str] = {}

    async def _reload(self) -> None:
        self.rows = await asyncio.to_thread(_orders, self.status_filter)

    @rx.event
    @admin_event
    async def load(self, actor: Actor) -> EventSpec | None:
        self.refund_key = "ui-" + secrets.token_hex(8)
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def set_filter(self, actor: Actor, value: str) -> EventSpec | None:
        if value in ORDER_FILTERS:
            self.status_filter = value
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def approve(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:
        order_id, reference = str(form.get("order_id") or ""), str(form.get("reference") or "")
        await self._run(
            with_session(
                lambda s: manual.approve(
                    s, order_id=order_id, actor=actor, payment_reference=reference
                )
            ),
            f"Order {order_id} approved and credited.",
        )
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def reject(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:
        order_id, reason = str(form.get("order_id") or ""), str(form.get("reason") or "")
        await self._run(
            with_session(lambda s: manual.reject(s, order_id=order_id, actor=actor, reason=reason)),
            f"Order {order_id} rejected.",
        )
        await self._reload()
        return None

    @rx.event
    @admin_event
    async def refund(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:
        """Refund at once (no confirmation): what confirm_refund runs once confirmed."""
        await self._refund(actor, form, "")
        return None

    @rx.event
    @admin_event
    async def ask_refund(self, actor: Actor, form: dict[str, str]) -> EventSpec | None:
        """Check the refund and show what it would do in a confirmation; writes nothing."""
        self.admin_error = self.admin_notice = ""
        order_id = str(form.get("order_id") or "")
        currency = next((r["currency"] for r in self.rows if r["id"] == order_id), "EUR")
        try:
            amount = forms.money(form, "amount", currency, field="amount")
            if not str(form.get("reason") or "").strip():
                raise ValidationFailed("a reason is required for a refund")
            preview = await asyncio.to_thread(_preview, order_id, amount)
        except CreditdashError as exc:
            self.admin_error = exc.message
            return None
        self._pending_form = {**{k: str(v) for k, v in form.items()}, "name": preview.customer_name}
        self.confirm_text = _preview_text(preview)
        return None

    @rx.event
    @admin_event
    async def confirm_refund(self, actor: Actor) -> EventSpec | None:
        pending, self._pending_form, self.confirm_text = self._pending_form, {}, ""
        if not pending:
            return None
        await self._refund(actor, pending, pending.get("name", ""))
        if self.admin_error:
            return None  # the form keeps what was typed
        form_id = json.dumps(refund_form_id(pending.get("order_id", "")))
        return rx.call_script(
            f"document.getElementById({form_id})?.querySelectorAll('input:not([type=hidden])')"
            ".forEach((i) => { i.value = ''; })"
        )

    @rx.event
    def cancel_confirm(self) -> None:
        self._pending_form, self.confirm_text = {}, ""

    async def _refund(self, actor: Actor, form: dict[str, str], name: str) -> None:
        order_id = str(form.get("order_id") or "")
        row = next((r for r in self.rows if r["id"] == order_id), None)
        currency = row["currency"] if row else "EUR"
        refund_id = f"{self.refund_key}-{order_id}"
        done: list[Refund] = []

        def work() -> object:
            amount = forms.money(form, "amount", currency, field="amount")
            done.append(
                refunds.refund_order(
                    order_id,
                    amount_minor=amount,
                    refund_id=refund_id,
                    actor=actor,
                    reason=str(form.get("reason") or ""),
                )
            )
            return None

        await self._run(work, "")
        if done:
            who = name or (row["customer_id"] if row else "the customer")
            self.admin_notice = (
                f"Refunded {minor_text(done[0].amount_minor, done[0].currency)}; "
                f"{credits_text(done[0].credits_micros)} credits removed from {who}."
            )
        self.refund_key = "ui-" + secrets.token_hex(8)
        await self._reload()


def _preview(order_id: str, amount_minor: int) -> refunds.RefundPreview:
    with db.session_scope(readonly=True) as session:
        return refunds.preview_refund(session, order_id, amount_minor=amount_minor)


def _preview_text(preview: refunds.RefundPreview) -> str:
    """The confirmation's sentence, from the same computation the refund itself uses."""
    money = minor_text(preview.amount_minor, preview.currency)
    text = (
        f"Refund {money} to {preview.customer_name}? This removes "
        f"{credits_text(preview.credits_micros)} credits from their balance."
    )
    if preview.unrecovered_micros:
        text += (
            f" {credits_text(preview.unrecovered_micros)} credits of the order were already "
            "used and are not taken back."
        )
    return text + " The money goes back through the payment provider; this cannot be undone."
