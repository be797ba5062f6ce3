"""What each event's email says: a subject and a plain-text body, in plain English.

Only texts here (no database, no sending), so every wording can be read and tested on its own.
A template gets the event's data and the dashboard's base URL; amounts are formatted with the
money helpers, so an email shows the same figures as the dashboard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from creditdash.core.money import format_credits, format_minor

SIGN_OFF = "\n\n-- \nThis email was sent by creditdash about your workspace."


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    attachment: str | None = None


def _money(minor: Any, currency: Any) -> str:
    try:
        return f"{format_minor(int(minor), str(currency))} {currency}"
    except Exception:
        # An amount the event did not carry in a form we know: say it plainly, not crash.
        return f"{minor} {currency}"


def _credits(micros: Any) -> str:
    return f"{format_credits(int(micros or 0))} credits"


def invoice_link(base_url: str, number: str) -> str:
    """The dashboard address of an invoice's PDF (web/documents.py serves it to members)."""
    return f"{base_url}/billing/invoices/{number}.pdf"


def payment_succeeded(data: dict[str, Any], workspace: str, base_url: str) -> Rendered:
    amount = _money(data.get("amount_minor", 0), data.get("currency", ""))
    credits = _credits(data.get("credits_micros"))
    lines = [
        "Hello,",
        "",
        f"Thank you: we received your payment of {amount} for {workspace}.",
        f"{credits} were added to the workspace's balance.",
    ]
    if data.get("invoice_number"):
        lines.append(f"The invoice is {data['invoice_number']}; it follows in a separate email.")
    return Rendered(f"Payment received: {amount}", "\n".join(lines) + SIGN_OFF)


def invoice_issued(data: dict[str, Any], workspace: str, base_url: str) -> Rendered:
    number = str(data.get("invoice_number", ""))
    amount = _money(data.get("gross_minor", 0), data.get("currency", ""))
    label = "credit note" if data.get("kind") == "credit_note" else "invoice"
    text = (
        f"Hello,\n\nYour {label} {number} for {workspace} over {amount} is attached as a PDF.\n"
        f"You can also download it at any time (signed in) from:\n"
        f"{invoice_link(base_url, number)}"
    )
    return Rendered(
        f"{label.capitalize()} {number} ({amount})",
        text + SIGN_OFF,
        attachment=f"invoice:{number}" if number else None,
    )


def refund_succeeded(data: dict[str, Any], workspace: str, base_url: str) -> Rendered:
    amount = _money(data.get("amount_minor", 0), data.get("currency", ""))
    credits = _credits(data.get("credits_micros"))
    text = (
        f"Hello,\n\nWe refunded {amount} to the payment method used for {workspace}.\n"
        f"{credits} were taken off the workspace's balance. Depending on your bank, the money "
        "shows on your statement within a few days."
    )
    return Rendered(f"Refund issued: {amount}", text + SIGN_OFF)


def balance_low(data: dict[str, Any], workspace: str, base_url: str) -> Rendered:
    available = _credits(data.get("available_micros"))
    threshold = _credits(data.get("threshold_micros"))
    text = (
        f"Hello,\n\nThe balance of {workspace} is down to {available}, below the alert "
        f"level of {threshold}.\nWhen it runs out, requests to the gateway are refused. "
        f"You can buy credits in the dashboard: {base_url}/billing"
    )
    return Rendered(f"Low balance: {available} left in {workspace}", text + SIGN_OFF)


def budget_threshold(data: dict[str, Any], workspace: str, base_url: str) -> Rendered:
    percent = data.get("threshold_percent", "?")
    budget = _credits(data.get("budget_micros"))
    spent = _credits(data.get("spent_micros"))
    period = data.get("period", "this period")
    text = (
        f"Hello,\n\n{workspace} has used {percent}% of its budget for {period}: "
        f"{spent} of {budget}.\nSee the usage in the dashboard: {base_url}/usage"
    )
    return Rendered(f"Budget alert: {percent}% of the {period} budget used", text + SIGN_OFF)


def topup_failed(data: dict[str, Any], workspace: str, base_url: str) -> Rendered | None:
    if data.get("paused"):
        return None  # the autotopup.paused email of the same failure tells it
    reason = str(data.get("reason") or "the payment was declined")
    amount = _money(data.get("amount_minor", 0), data.get("currency", ""))
    pay = f"{base_url}{data['pay_path']}" if data.get("pay_path") else f"{base_url}/billing"
    text = (
        f"Hello,\n\nAn automatic top-up of {workspace} ({data.get('package', 'credits')}, "
        f"{amount}) did not go through: {reason}.\nNothing was charged and no credits were "
        f"added. You can pay for the same package yourself here:\n{pay}\n"
        f"Or check the saved card in the dashboard: {base_url}/billing/autotopup"
    )
    return Rendered(f"Automatic top-up failed for {workspace}", text + SIGN_OFF)


def topup_paused(data: dict[str, Any], workspace: str, base_url: str) -> Rendered:
    reason = str(data.get("reason") or "the last automatic top-ups failed")
    pay = f"{base_url}{data['pay_path']}" if data.get("pay_path") else f"{base_url}/billing"
    text = (
        f"Hello,\n\nAutomatic top-ups of {workspace} are paused: {reason}.\n"
        "No further automatic payments are attempted until someone resumes them in the "
        f"dashboard ({base_url}/billing/autotopup).\n"
        f"To add credits now, pay for the package yourself here:\n{pay}"
    )
    return Rendered(f"Automatic top-ups paused for {workspace}", text + SIGN_OFF)


def endpoint_disabled(data: dict[str, Any], workspace: str, base_url: str) -> Rendered:
    url = str(data.get("url", ""))
    reason = str(data.get("reason") or "its deliveries kept failing")
    text = (
        f"Hello,\n\nWe stopped sending webhooks of {workspace} to {url}: {reason}.\n"
        "Events are not delivered to it until it is enabled again in the dashboard."
    )
    return Rendered("A webhook endpoint was disabled", text + SIGN_OFF)


def dispute_opened(data: dict[str, Any], workspace: str, base_url: str) -> Rendered:
    amount = _money(data.get("amount_minor", 0), data.get("currency", ""))
    frozen = _credits(data.get("credits_frozen_micros"))
    text = (
        f"Hello,\n\nA payment of {workspace} ({amount}, order {data.get('order_id', '?')}) "
        f"was disputed with the card issuer.\n{frozen} bought with it are frozen while the "
        "dispute is open: they stay on the balance but cannot be spent. If the dispute is "
        "decided for us they are released again; if the payment is returned to the card "
        f"holder they are taken back.\nSee the balance in the dashboard: {base_url}/billing"
    )
    return Rendered(f"Payment disputed: {amount}", text + SIGN_OFF)


def dispute_closed(data: dict[str, Any], workspace: str, base_url: str) -> Rendered:
    amount = _money(data.get("amount_minor", 0), data.get("currency", ""))
    frozen = _credits(data.get("credits_frozen_micros"))
    lost = data.get("status") == "lost"
    outcome = (
        f"the payment was returned to the card holder, and the {frozen} frozen for it were "
        "taken off the balance; a credit note for the invoice follows"
        if lost
        else f"it was closed in the workspace's favour, and the {frozen} frozen for it can be "
        "spent again"
    )
    text = (
        f"Hello,\n\nThe dispute over a payment of {workspace} ({amount}, order "
        f"{data.get('order_id', '?')}) is closed: {outcome}."
    )
    return Rendered(f"Payment dispute {'lost' if lost else 'closed'}: {amount}", text + SIGN_OFF)


Template = Callable[[dict[str, Any], str, str], Rendered | None]
TEMPLATES: dict[str, Template] = {
    "payment.succeeded": payment_succeeded,
    "invoice.issued": invoice_issued,
    "refund.succeeded": refund_succeeded,
    "balance.low": balance_low,
    "budget.threshold": budget_threshold,
    "autotopup.failed": topup_failed,
    "autotopup.paused": topup_paused,
    "webhook.endpoint_disabled": endpoint_disabled,
    "dispute.opened": dispute_opened,
    "dispute.closed": dispute_closed,
}
