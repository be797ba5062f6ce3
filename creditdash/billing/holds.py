"""Housekeeping: expiring holds that their request never resolved (a crashed worker, a lost
connection), payment orders whose payment window passed, and applying scheduled prices."""

from __future__ import annotations

import asyncio
import logging

from creditdash.billing import ledger
from creditdash.core import db
from creditdash.core.settings import get_settings

log = logging.getLogger(__name__)


def expire_once(limit: int = 500) -> int:
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


def apply_price_schedules_once() -> int:
    from creditdash.proxy.pricing_admin import apply_due_schedules

    with db.session_scope() as session:
        return apply_due_schedules(session)


def expire_orders_once() -> int:
    from creditdash.billing.payments.orders import expire_stale_orders

    with db.session_scope() as session:
        return expire_stale_orders(session)


async def expire_holds_forever(interval_s: float | None = None) -> None:
    """Run expiry (holds, then orders) every interval; a failed pass is logged and the loop
    goes on."""
    interval = interval_s or get_settings().hold_expiry_interval_s
    while True:
        await asyncio.sleep(interval)
        try:
            expired = await asyncio.to_thread(expire_once)
            if expired:
                log.warning("expired %d stale holds", expired)
        except Exception:
            log.exception("hold expiry pass failed")
        try:
            await asyncio.to_thread(expire_orders_once)
        except Exception:
            log.exception("order expiry pass failed")
        try:
            await asyncio.to_thread(apply_price_schedules_once)
        except Exception:
            log.exception("price schedule pass failed")
