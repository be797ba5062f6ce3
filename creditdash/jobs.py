"""The clock: periodic housekeeping that no request triggers.

Each pass expires holds that their request never resolved (a crashed worker, a lost
connection), expires payment orders whose payment window passed, applies price schedules and
route cost schedules that came due, reconciles paid checkout sessions once a day
(billing/payments/reconcile.py), deletes stored Responses-API answers past their retention,
deletes expired Idempotency-Key rows, emits budget alerts a settlement missed, starts automatic
top-ups a settlement missed, makes and sends webhook deliveries (notify/delivery.py), turns
events into emails and sends the outbox's due mail (notify/dispatch.py, notify/mail.py). Each
job is one service call in short transactions; a
failed pass is logged and the loop goes on. The Reflex app runs it as a lifespan task and
`creditdash gateway` in its own lifespan (server.py); `creditdash ledger expire-holds` runs the
first job once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from creditdash.billing import budgets, ledger
from creditdash.billing.payments import autotopup, reconcile
from creditdash.billing.payments.orders import expire_stale_orders
from creditdash.catalog.cost_schedules import apply_due_cost_schedules
from creditdash.catalog.pricing import apply_due_schedules
from creditdash.core import db
from creditdash.core.settings import get_settings
from creditdash.notify import dispatch, mail
from creditdash.notify.delivery import deliver_due_once, fan_out_once
from creditdash.proxy import idempotency_keys, stored_responses

log = logging.getLogger(__name__)


def expire_holds_once(limit: int = 500) -> int:
    """Expire stale holds, each in its own short transaction; one failure does not stop the rest."""
    with db.session_scope(readonly=True) as session:
        stale = ledger.stale_hold_ids(session, limit=limit)
    expired = 0
    for hold_id in stale:
        try:
            with db.session_scope() as session:
                expired += ledger.expire(session, hold_id=hold_id)
        except Exception:
            log.exception("could not expire hold %s", hold_id)
    return expired


def expire_orders_once() -> int:
    with db.session_scope() as session:
        return expire_stale_orders(session)


def apply_price_schedules_once() -> int:
    with db.session_scope() as session:
        return apply_due_schedules(session)


def apply_cost_schedules_once() -> int:
    with db.session_scope() as session:
        return apply_due_cost_schedules(session)


def reconcile_payments_once() -> int:
    """The daily `payments reconcile`: due once per 24 h across processes and restarts (its
    last run is a row in payment_reconcile_runs); the orders it credited."""
    return reconcile.run_daily()


def expire_idempotency_keys_once() -> int:
    """Delete Idempotency-Key rows older than their 24 h."""
    return idempotency_keys.delete_expired()


JOBS: tuple[tuple[str, Callable[[], int]], ...] = (
    ("hold expiry", expire_holds_once),
    ("order expiry", expire_orders_once),
    ("price schedule", apply_price_schedules_once),
    ("route cost schedule", apply_cost_schedules_once),
    ("idempotency key expiry", expire_idempotency_keys_once),
    ("stored response expiry", stored_responses.purge_expired),
    # The backstop for alerts a settlement's own check missed (same dedupe keys: idempotent).
    ("budget alerts", budgets.check_all_alerts),
    # The backstop for top-ups a settlement's own trigger missed (same claim: idempotent), and
    # the retry of charges whose answer was lost (same idempotency key).
    ("auto top-up", autotopup.check_all),
    # Paid checkout sessions whose webhook never came (same settlement keys: idempotent).
    ("payment reconcile", reconcile_payments_once),
    ("webhook fan-out", fan_out_once),
    ("webhook delivery", deliver_due_once),
    ("event mail", dispatch.mail_events_once),
    ("mail sender", mail.send_due_mail),
)


async def run_forever(interval_s: float | None = None) -> None:
    """Every interval, each job in turn, off the event loop."""
    interval = interval_s or get_settings().hold_expiry_interval_s
    while True:
        await asyncio.sleep(interval)
        for name, job in JOBS:
            try:
                done = await asyncio.to_thread(job)
            except Exception:
                log.exception("%s pass failed", name)
                continue
            if done and job is expire_holds_once:
                log.warning("expired %d stale holds", done)
