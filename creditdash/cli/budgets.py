"""`creditdash budgets`: a workspace's monthly budget and its alerts."""

from __future__ import annotations

import click
from sqlmodel import Session

from creditdash.billing import budgets
from creditdash.cli.common import emit, in_transaction, raise_refusal
from creditdash.core.audit import CLI
from creditdash.core.money import format_credits, parse_credits


@click.group("budgets")
def group() -> None:
    """Workspace monthly budgets (hard: refuse past it; soft: alert only) and alerts."""


def _text(status: budgets.BudgetStatus) -> str:
    limit = status.monthly_budget_micros
    low = status.low_balance_micros
    lines = [
        f"customer: {status.customer_id}",
        f"period: {status.period} (resets {status.resets_at:%Y-%m-%d} 00:00 UTC)",
        "budget: " + (f"{format_credits(limit)} ({'hard' if status.hard else 'soft'})"
                      if limit is not None else "none"),
        f"spent: {format_credits(status.spent_micros)}"
        + (f" ({status.percent}%)" if status.percent is not None else ""),
        f"held: {format_credits(status.held_micros)}",
        "thresholds: " + (",".join(str(t) for t in status.thresholds) or "none"),
        "low balance alert: " + (format_credits(low) if low is not None else "off"),
    ]  # fmt: skip
    return "\n".join(lines)


@group.command("set")
@click.option("--customer", "customer_id", required=True)
@click.option("--monthly", default=None, help="Credits the workspace may spend per UTC month")
@click.option("--hard", is_flag=True, help="Refuse requests (402) once the budget is reached")
@click.option("--thresholds", default="50,80,100", show_default=True, help="Alert percents")
@click.option("--low-balance", default=None, help="Alert when the balance falls below (credits)")
@click.option("--json", "as_json", is_flag=True)
def budgets_set(
    customer_id: str,
    monthly: str | None,
    hard: bool,
    thresholds: str,
    low_balance: str | None,
    as_json: bool,
) -> None:
    """Set or replace a workspace's budget."""

    def work(session: Session) -> budgets.BudgetStatus:
        if monthly is None and low_balance is None:
            raise_refusal("give --monthly, --low-balance or both")
        return budgets.set_budget(
            session,
            customer_id=customer_id,
            monthly_micros=parse_credits(monthly, field="--monthly") if monthly else None,
            hard=hard,
            thresholds=budgets.parse_thresholds(thresholds),
            low_balance_micros=(
                parse_credits(low_balance, field="--low-balance") if low_balance else None
            ),
            actor=CLI,
        )

    status = in_transaction(work)
    emit(status.as_dict(), as_json, _text(status))


@group.command("show")
@click.argument("customer_arg", metavar="[ID]", required=False)
@click.option("--customer", "customer_id", default=None)
@click.option("--json", "as_json", is_flag=True)
def budgets_show(customer_arg: str | None, customer_id: str | None, as_json: bool) -> None:
    """A workspace's budget and its spend this month (ID or --customer ID)."""

    def work(session: Session) -> budgets.BudgetStatus:
        if (customer_arg is None) == (customer_id is None) or customer_arg == "":
            raise_refusal("name the workspace once: budgets show ID, or --customer ID")
        return budgets.get_budget_status(session, customer_arg or customer_id or "")

    status = in_transaction(work, readonly=True)
    emit(status.as_dict(), as_json, _text(status))


@group.command("clear")
@click.option("--customer", "customer_id", required=True)
def budgets_clear(customer_id: str) -> None:
    """Remove a workspace's budget and alerts."""
    cleared = in_transaction(lambda s: budgets.clear_budget(s, customer_id=customer_id, actor=CLI))
    click.echo(
        f"cleared the budget of {customer_id}" if cleared else f"{customer_id} has no budget"
    )
