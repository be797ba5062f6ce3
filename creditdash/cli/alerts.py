"""`creditdash alerts`: the low-balance alert on its own, keeping the workspace's budget as is."""

from __future__ import annotations

import click
from sqlmodel import Session

from creditdash.billing import budgets
from creditdash.cli.common import emit, in_transaction
from creditdash.core.audit import CLI
from creditdash.core.errors import NotFound
from creditdash.core.money import format_credits, parse_credits


@click.group("alerts")
def group() -> None:
    """Balance alerts (emailed to owners, admins and billing members; webhook balance.low)."""


@group.command("low-balance")
@click.option("--customer", "customer_id", required=True)
@click.option("--below", required=True, help="Alert when available credits fall below this")
@click.option("--json", "as_json", is_flag=True)
def alerts_low_balance(customer_id: str, below: str, as_json: bool) -> None:
    """Alert once each time the workspace's available credits fall below --below."""

    def work(session: Session) -> budgets.BudgetStatus:
        below_micros = parse_credits(below, field="--below")
        try:
            current = budgets.get_budget_status(session, customer_id)
        except NotFound:  # no budget yet: the alert alone
            return budgets.set_budget(
                session,
                customer_id=customer_id,
                monthly_micros=None,
                hard=False,
                low_balance_micros=below_micros,
                actor=CLI,
            )
        return budgets.set_budget(
            session,
            customer_id=customer_id,
            monthly_micros=current.monthly_budget_micros,
            hard=current.hard,
            thresholds=current.thresholds,
            low_balance_micros=below_micros,
            actor=CLI,
        )

    status = in_transaction(work)
    line = format_credits(status.low_balance_micros or 0)
    emit(status.as_dict(), as_json, f"low-balance alert below {line} credits")
