"""The overview's budget card: it shows the budget as it is, and its form starts from the saved
values, so saving it unchanged keeps the budget (it once started empty and cleared it)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from creditdash.billing import budgets
from creditdash.core import db
from creditdash.core.audit import CLI
from creditdash.state.base import SignedIn, Workspace
from creditdash.state.portal.overview import NO_BUDGET, _budget_card, _save_budget
from tests.factories import signed_up


def _as_owner() -> Workspace:
    user_id, customer_id = signed_up()
    return Workspace(SignedIn(user_id, "founder@example.com", "Ada", False), customer_id, "owner")


def test_the_form_starts_from_the_saved_budget_and_saving_it_keeps_it(
    sqlite_engine: Engine,
) -> None:
    where = _as_owner()
    assert _budget_card(where.customer_id) == NO_BUDGET
    with db.session_scope() as session:
        budgets.set_budget(
            session, customer_id=where.customer_id, monthly_micros=8_000, hard=True,
            thresholds=[75, 90], low_balance_micros=5_000_000, actor=CLI,
        )  # fmt: skip
    card = _budget_card(where.customer_id)
    assert (card["budget"], card["kind"], card["thresholds"]) == ("0.008", "hard", "75%, 90%")
    assert (card["form_monthly"], card["form_thresholds"], card["form_low_balance"]) == (
        "0.008000",
        "75,90",
        "5.000000",
    )
    assert card["form_hard"] is True
    # What the browser sends back when nothing was edited (a checked box is "on").
    _save_budget(
        where,
        {
            "monthly": card["form_monthly"],
            "thresholds": card["form_thresholds"],
            "low_balance": card["form_low_balance"],
            "hard": "on",
        },
    )
    assert _budget_card(where.customer_id) == card
    # Changing one field changes only it, and a new form key starts the form again from it.
    _save_budget(
        where, {"monthly": "0.01", "thresholds": "75,90", "low_balance": "5", "hard": "on"}
    )
    after = _budget_card(where.customer_id)
    assert after["form_monthly"] == "0.010000" and after["form_low_balance"] == "5.000000"
    assert after["form_key"] != card["form_key"]
