"""`creditdash orders`: payment orders, from opening one to approving, rejecting or refunding it."""

from __future__ import annotations

import json
import sys

import click
from sqlmodel import Session

from creditdash.accounts import users

# Aliased: orders create has a --manual flag, and its parameter would hide the module.
from creditdash.billing.payments import manual as bank_transfers
from creditdash.billing.payments import orders, packages, placing, refunds
from creditdash.cli.common import emit, in_transaction, raise_refusal, refusals
from creditdash.core.audit import CLI, Actor
from creditdash.core.money import format_credits, format_minor, parse_credits, parse_minor


def _admin_actor(session: Session, email: str) -> Actor:
    """The audit actor for --admin: only an active platform admin may act on orders."""
    user = users.get_user_by_email(session, email)
    if user is None or not user.is_platform_admin or not user.is_active:
        raise_refusal(f"{email} is not an active platform admin")
    assert user is not None and user.id is not None
    return Actor.user(user.id, user.email)


def _show(order_id: str, as_json: bool) -> None:
    """Every order command ends by printing the order as it now stands."""
    payload = in_transaction(
        lambda s: orders.describe_order(orders.get_order(s, order_id)), readonly=True
    )
    emit(payload, as_json, "\n".join(f"{k}: {v}" for k, v in payload.items()))


@click.group("orders")
def group() -> None:
    """Payment orders: open, inspect, approve bank transfers, refund."""


@group.command("create")
@click.option("--customer", "customer_id", required=True)
@click.option("--package", "package_name", required=True)
@click.option("--quantity", default=1, show_default=True, type=int)
@click.option("--manual", is_flag=True, help="Pay by bank transfer (Custom always is).")
@click.option("--amount", "amount_text", default=None, help="Custom only: contract net amount.")
@click.option("--credits", "credits_text", default=None, help="Custom only: contract credits.")
@click.option("--admin", "admin_email", default=None, help="Open it as this admin (audit).")
@click.option("--json", "as_json", is_flag=True)
def orders_create(
    customer_id: str,
    package_name: str,
    quantity: int,
    manual: bool,
    amount_text: str | None,
    credits_text: str | None,
    admin_email: str | None,
    as_json: bool,
) -> None:
    """Open an order awaiting payment; checkout orders get their payment page URL."""

    def work(session: Session) -> placing.Placement:
        # The contract amount is read in the package's currency, so the package comes first.
        currency = packages.find_package(session, package_name).currency
        return placing.place_order(
            session,
            customer_id=customer_id,
            package_name=package_name,
            quantity=quantity,
            actor=_admin_actor(session, admin_email) if admin_email else CLI,
            manual=manual,
            contract_net_minor=parse_minor(amount_text, currency, field="--amount")
            if amount_text is not None
            else None,
            contract_credits_micros=parse_credits(credits_text, field="--credits")
            if credits_text is not None
            else None,
        )

    placement = in_transaction(work)
    with refusals():
        placing.open_payment(placement)
    order_id = placement.order_id
    _show(order_id, as_json)


@group.command("show")
@click.argument("order_id")
@click.option("--json", "as_json", is_flag=True)
def orders_show(order_id: str, as_json: bool) -> None:
    """One order with its current status."""
    _show(order_id, as_json)


@group.command("list")
@click.option("--customer", "customer_id", default=None)
@click.option("--status", default=None)
@click.option("--json", "as_json", is_flag=True)
def orders_list(customer_id: str | None, status: str | None, as_json: bool) -> None:
    """Recent orders, newest first."""
    rows = in_transaction(
        lambda s: [
            orders.describe_order(o)
            for o in orders.list_orders(s, customer_id=customer_id, status=status)
        ],
        readonly=True,
    )
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(
            f"{row['order_id']}  {row['status']:<18} {row['package']:<12} "
            f"{row['gross']:>10} {row['currency']}  {row['customer_id']}"
        )


@group.command("approve")
@click.argument("order_id")
@click.option("--admin", "admin_email", required=True, help="The approving admin's email.")
@click.option("--reference", required=True, help="The received bank transfer's reference.")
@click.option("--json", "as_json", is_flag=True)
def orders_approve(order_id: str, admin_email: str, reference: str, as_json: bool) -> None:
    """Settle a bank-transfer order: credits the customer once."""
    in_transaction(
        lambda s: bank_transfers.approve(
            s, order_id=order_id, actor=_admin_actor(s, admin_email), payment_reference=reference
        )
    )
    _show(order_id, as_json)


@group.command("reject")
@click.argument("order_id")
@click.option("--admin", "admin_email", required=True)
@click.option("--reason", required=True)
@click.option("--json", "as_json", is_flag=True)
def orders_reject(order_id: str, admin_email: str, reason: str, as_json: bool) -> None:
    """Close a bank-transfer order whose payment will not come."""
    in_transaction(
        lambda s: bank_transfers.reject(
            s, order_id=order_id, actor=_admin_actor(s, admin_email), reason=reason
        )
    )
    _show(order_id, as_json)


@group.command("refund")
@click.argument("order_id")
@click.option("--amount", "amount_text", required=True, help="Money to return, e.g. 10.00")
@click.option(
    "--refund-id",
    required=True,
    help="Your unique id for this refund: running it again finishes or repeats it, never twice.",
)
@click.option("--reason", required=True)
@click.option("--admin", "admin_email", required=True)
@click.option("--json", "as_json", is_flag=True)
def orders_refund(
    order_id: str,
    amount_text: str,
    refund_id: str,
    reason: str,
    admin_email: str,
    as_json: bool,
) -> None:
    """Refund part or all of a paid order, within the published policy."""

    def prepare(session: Session) -> tuple[Actor, int]:
        order = orders.get_order(session, order_id)
        return _admin_actor(session, admin_email), parse_minor(
            amount_text, order.currency, field="--amount"
        )

    actor, amount_minor = in_transaction(prepare, readonly=True)
    with refusals():
        refund = refunds.refund_order(
            order_id,
            amount_minor=amount_minor,
            refund_id=refund_id,
            actor=actor,
            reason=reason,
        )
    payload = {
        "refund_id": refund.id,
        "order_id": refund.order_id,
        "status": refund.status,
        "amount": format_minor(refund.amount_minor, refund.currency),
        "currency": refund.currency,
        "credits_taken": format_credits(refund.credits_micros),
        "credits_unrecovered": format_credits(refund.unrecovered_micros),
    }
    emit(payload, as_json, "\n".join(f"{k}: {v}" for k, v in payload.items()))
    if refund.status == "failed":
        click.echo(f"error: refund {refund.id} failed: {refund.failure}", err=True)
        sys.exit(1)
