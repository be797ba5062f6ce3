"""Placing an order: the one workflow behind the portal's "Pay" and "Request invoice" buttons
and `creditdash orders create`.

It was written twice and the copies had drifted: the portal recorded the accepted terms and
opened the checkout page only for its own customer, the command line could set a Custom
package's contract amounts. place_order() takes all of it; each caller passes what it has.

Two steps, because a checkout page is asked of the payment provider over the network and that
must not happen inside a database transaction: place_order() opens the order in the caller's
transaction, open_payment() runs after the commit. place() does both for callers that hold no
session of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlmodel import Session

from creditdash.accounts import roles
from creditdash.billing.payments import checkout, orders, packages
from creditdash.core import db
from creditdash.core.audit import Actor


@dataclass(frozen=True)
class Placement:
    """What the customer is told to do next, read from the stored order (never the quote)."""

    order_id: str
    customer_id: str
    method: str  # "checkout" or "manual" (bank transfer)
    gross_minor: int
    currency: str
    transfer_reference: str | None
    # The payment page, once open_payment() has run for a checkout order.
    checkout_url: str | None = None


def place_order(
    session: Session,
    *,
    customer_id: str,
    package_name: str,
    quantity: int = 1,
    actor: Actor,
    manual: bool = False,
    accept_terms: bool = False,
    contract_net_minor: int | None = None,
    contract_credits_micros: int | None = None,
) -> Placement:
    """Open an order awaiting payment (the caller commits). A manual-only package is paid by
    bank transfer whatever `manual` says; contract amounts are for the Custom package only;
    `accept_terms` records that the buyer accepted the current terms. A user actor needs
    billing.manage in the workspace; the operator does not."""
    roles.require_actor(session, actor=actor, customer_id=customer_id, permission="billing.manage")
    package = packages.find_package(session, package_name)
    order = orders.create_order(
        session,
        customer_id=customer_id,
        package=package,
        quantity=quantity,
        actor=actor,
        manual=manual,
        accept_terms=accept_terms,
        contract_net_minor=contract_net_minor,
        contract_credits_micros=contract_credits_micros,
    )
    return Placement(
        order_id=order.id,
        customer_id=order.customer_id,
        method=order.method,
        gross_minor=order.gross_minor,
        currency=order.currency,
        transfer_reference=order.transfer_reference,
    )


def open_payment(placement: Placement) -> Placement:
    """After the commit: a checkout order gets its payment page, scoped to its customer (a
    bank-transfer order needs none and comes back as it was)."""
    if placement.method != "checkout":
        return placement
    opened = checkout.open_checkout(placement.order_id, customer_id=placement.customer_id)
    return replace(placement, checkout_url=opened.checkout_url or "")


def place(
    *,
    customer_id: str,
    package_name: str,
    quantity: int = 1,
    actor: Actor,
    manual: bool = False,
    accept_terms: bool = False,
    contract_net_minor: int | None = None,
    contract_credits_micros: int | None = None,
) -> Placement:
    """place_order() in a transaction of its own, then open_payment()."""
    with db.session_scope() as session:
        placement = place_order(
            session,
            customer_id=customer_id,
            package_name=package_name,
            quantity=quantity,
            actor=actor,
            manual=manual,
            accept_terms=accept_terms,
            contract_net_minor=contract_net_minor,
            contract_credits_micros=contract_credits_micros,
        )
    return open_payment(placement)
