"""`creditdash autotopup`: a workspace's automatic top-up rule (the card is saved in the
dashboard, where the member gives the consent)."""

from __future__ import annotations

from typing import Any

import click
from sqlmodel import Session

from creditdash.billing.payments import autotopup, autotopup_rules
from creditdash.cli.common import emit, in_transaction, refusals
from creditdash.core.audit import CLI
from creditdash.core.money import format_credits, parse_credits


@click.group("autotopup")
def group() -> None:
    """Automatic top-ups: buy a package off-session when the balance falls below a line."""


def _cap(micros: int | None) -> str:
    return format_credits(micros) if micros is not None else "none"


def _text(shown: dict[str, Any]) -> str:
    lines = [f"customer: {shown['customer_id']}"]
    rule = shown["rule"]
    if rule is None:
        lines.append("rule: none")
    else:
        lines += [
            f"rule: {rule['status']}"
            + (f" ({rule['paused_reason']})" if rule["paused_reason"] else ""),
            f"below: {rule['below']} credits",
            f"buys: {rule['package']} x{rule['quantity']} ({rule['credits_per_topup']} credits)",
            f"monthly cap: {_cap(rule['monthly_cap_micros'])}",
            f"daily cap: {_cap(rule['daily_cap_micros'])}",
            f"cool-down: {rule['cooldown_s']} s",
            f"failures in a row: {rule['consecutive_failures']}"
            f" (pauses at {rule['max_consecutive_failures']})",
            f"in flight: {rule['in_flight_attempt_id'] or 'none'}",
        ]
    method = shown["payment_method"]
    lines.append(
        "card: none"
        if method is None
        else f"card: {method['brand']} ending {method['last4']} "
        f"(consent {method['consent_at']}, terms {method['consent_terms_version']})"
    )
    lines.append(
        f"bought this month: {format_credits(shown['month_spent_micros'])}, "
        f"today: {format_credits(shown['day_spent_micros'])}"
    )
    for attempt in shown["attempts"]:
        lines.append(
            f"  {attempt['created_at']}  {attempt['attempt_id']}  {attempt['status']:<15} "
            f"{attempt['credits']} credits  {attempt['order_id']}  {attempt['failure_code']}"
        )
    return "\n".join(lines)


def _show(session: Session, customer_id: str) -> dict[str, Any]:
    return autotopup_rules.describe(session, customer_id)


@group.command("set")
@click.option("--customer", "customer_id", required=True)
@click.option("--below", required=True, help="Buy when available credits fall below this")
@click.option("--package", "package_name", required=True, help="The credit package to buy")
@click.option("--quantity", default=1, show_default=True, type=int)
@click.option("--monthly-cap", default=None, help="Credits bought automatically per UTC month")
@click.option("--daily-cap", default=None, help="Credits bought automatically per UTC day")
@click.option(
    "--cooldown-s",
    default=autotopup_rules.DEFAULT_COOLDOWN_S,
    show_default=True,
    type=int,
    help="Seconds between two automatic top-ups",
)
@click.option("--json", "as_json", is_flag=True)
def autotopup_set(
    customer_id: str,
    below: str,
    package_name: str,
    quantity: int,
    monthly_cap: str | None,
    daily_cap: str | None,
    cooldown_s: int,
    as_json: bool,
) -> None:
    """Set (or replace) a workspace's rule and turn it on."""

    def work(session: Session) -> dict[str, Any]:
        data = autotopup_rules.RuleInput(
            threshold_micros=parse_credits(below, field="--below"),
            package_name=package_name,
            quantity=quantity,
            monthly_cap_micros=(
                parse_credits(monthly_cap, field="--monthly-cap") if monthly_cap else None
            ),
            daily_cap_micros=parse_credits(daily_cap, field="--daily-cap") if daily_cap else None,
            cooldown_s=cooldown_s,
        )
        autotopup_rules.set_rule(session, customer_id=customer_id, data=data, actor=CLI)
        return _show(session, customer_id)

    shown = in_transaction(work)
    emit(shown, as_json, _text(shown))


@group.command("show")
@click.argument("customer_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
def autotopup_show(customer_id: str, as_json: bool) -> None:
    """A workspace's rule, card, consent and recent automatic orders."""
    shown = in_transaction(lambda s: _show(s, customer_id), readonly=True)
    emit(shown, as_json, _text(shown))


def _status(customer_id: str, status: str, as_json: bool, reason: str = "") -> None:
    def work(session: Session) -> dict[str, Any]:
        autotopup_rules.set_status(
            session, customer_id=customer_id, status=status, actor=CLI, reason=reason
        )
        return _show(session, customer_id)

    shown = in_transaction(work)
    emit(shown, as_json, _text(shown))


@group.command("pause")
@click.argument("customer_id", metavar="ID")
@click.option("--reason", default="", help="Recorded in the audit log and shown to the members")
@click.option("--json", "as_json", is_flag=True)
def autotopup_pause(customer_id: str, reason: str, as_json: bool) -> None:
    """Stop automatic top-ups of a workspace until they are resumed."""
    _status(customer_id, "paused", as_json, reason)


@group.command("resume")
@click.argument("customer_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
def autotopup_resume(customer_id: str, as_json: bool) -> None:
    """Turn a paused rule back on (the failure count starts again at 0)."""
    _status(customer_id, "active", as_json)


@group.command("sandbox-card")
@click.option("--customer", "customer_id", required=True)
@click.option("--decline", is_flag=True, help="A card whose off-session charges are declined")
@click.option("--requires-action", is_flag=True, help="A card that always needs 3-D Secure")
@click.option("--json", "as_json", is_flag=True)
def autotopup_sandbox_card(
    customer_id: str, decline: bool, requires_action: bool, as_json: bool
) -> None:
    """Save a sandbox test card for a workspace (test deployments; consent recorded as the
    operator's). Refused when cards are saved at Stripe."""
    number = (
        "4000000000000002"
        if decline
        else "4000002760003184"
        if requires_action
        else "4242424242424242"
    )
    with refusals():
        saved = autotopup.save_sandbox_card(customer_id=customer_id, card_number=number, actor=CLI)
    shown = autotopup_rules.describe_method(saved) or {}
    emit(shown, as_json, f"saved {saved.brand} ending {saved.last4} for {customer_id}")
