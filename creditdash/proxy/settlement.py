"""The money side of one request: its hold, and the one settlement (or void) that resolves it.

A request can end in several places: the answer arrives, the upstream fails, the stream breaks
or times out, the client leaves mid-stream, the client leaves before the stream starts, or the
gateway itself fails. Each of those endings calls `Settlement.claim()` first, on the event-loop
thread; exactly one wins, and only the winner queues database work. The database's
UNIQUE(pending_id) stays the backstop behind it. The work itself runs on a metering thread
(dbworkers.py) in short transactions: the hot path of billing/hotpath.py where it fits, the
ledger's own path (billing/metering.py) for everything unusual.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from creditdash.billing import budgets, ledger, metering
from creditdash.billing.hotpath import HotLedger, PlacedHold
from creditdash.billing.models import UsageEntry
from creditdash.billing.payments import autotopup
from creditdash.catalog.prices import cost_micros
from creditdash.core import db
from creditdash.core.dbworkers import DbWorkers
from creditdash.core.errors import BudgetExceeded, InsufficientCredits, SpendCapReached
from creditdash.core.settings import get_settings
from creditdash.core.timeutil import utcnow
from creditdash.proxy import credit_refusal, errors
from creditdash.proxy.call import Call, Outcome, failed, ms_since
from creditdash.proxy.credit_refusal import HoldTerms
from creditdash.proxy.request_metrics import record_held, record_refused, record_settled

log = logging.getLogger(__name__)

KEY_TOUCH_INTERVAL_S = 60.0
# How often one process checks a workspace's budget alerts at the most (AlertChecks).
ALERT_CHECK_INTERVAL_S = 0.5
# Metering threads per process: SQLite takes one writer at a time; PostgreSQL runs
# CREDITDASH_DB_METERING_CONNECTIONS (2), each keeping one connection of its own. Every
# hold and settlement updates its customer's account row and one usage revenue shard's, so one
# customer's concurrent requests queue on those locks until the one before commits: for them
# more threads mostly add lock waits and re-checks of the updated row (PostgreSQL's
# EvalPlanQual), not throughput. Requests of customers in other shards do not wait.
DB_THREADS = {"sqlite": 1}


class MeteringStore:
    """The database side of metering for one engine: its worker threads, the hot-path SQL for
    its dialect, and the usage revenue shards' ids (platform accounts are never deleted)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        dialect = engine.dialect
        self.workers = DbWorkers(
            engine, DB_THREADS.get(dialect.name, get_settings().db_metering_connections)
        )
        self.hot = HotLedger(
            dialect.name, dialect.loaded_dbapi.IntegrityError, db.writer_lock(engine)
        )
        # The id of each usage revenue shard, by shard, as first asked.
        self._revenue_shards: dict[int, int] = {}

    def revenue_account_id(self, customer_account_id: int) -> int:
        """The usage revenue shard a customer account's charges credit (ledger.py)."""
        shard = customer_account_id % ledger.USAGE_REVENUE_SHARDS
        account_id = self._revenue_shards.get(shard)
        if account_id is None:
            with db.session_scope(engine=self.engine) as session:
                account_id = ledger.usage_revenue_account_id(session, customer_account_id)
            self._revenue_shards[shard] = account_id
        return account_id


class DetachedTasks:
    """Tasks no request's cancellation can reach, awaited when the gateway closes."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        # The work logs its own failures (a settlement that fails says which request, and its
        # hold is voided); retrieving the exception keeps asyncio from reporting it again,
        # without a traceback, whenever the task is collected.
        if not task.cancelled() and task.exception() is not None:
            log.debug("detached metering work ended with %r", task.exception())

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class KeyTouches:
    """When this process last updated each key's last_used_at (at most once a minute). Keys
    not touched for a minute are forgotten once the map is large: forgetting one only means
    its next request touches it again."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._touched: dict[str, float] = {}
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._touched)

    def due(self, key_id: str) -> bool:
        now = time.monotonic()
        if now - self._touched.get(key_id, -KEY_TOUCH_INTERVAL_S) < KEY_TOUCH_INTERVAL_S:
            return False
        if len(self._touched) >= self._max_entries:
            self._touched = {
                key: at for key, at in self._touched.items() if now - at < KEY_TOUCH_INTERVAL_S
            }
        self._touched[key_id] = now
        return True


class AlertChecks:
    """Budget-alert checks after charges, at most one per workspace per interval_s.

    A charge asks for a check after its commit. If one is already scheduled, that check will
    start after this commit and see it, so nothing more is needed; otherwise one is scheduled
    at once, or interval_s after the last one started. So a busy workspace costs a few checks a
    second however many requests it makes, and the last charge of a burst is always checked
    (the jobs loop's backstop covers a process that stops first). Event-loop thread only."""

    def __init__(self, interval_s: float = ALERT_CHECK_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._scheduled: set[str] = set()
        self._started: dict[str, float] = {}

    def request(self, customer_id: str, run: Callable[[], object]) -> None:
        if customer_id in self._scheduled:
            return
        self._scheduled.add(customer_id)

        def start() -> None:
            self._scheduled.discard(customer_id)
            self._started[customer_id] = time.monotonic()
            run()

        now = time.monotonic()
        if len(self._started) > 10_000:
            self._started = {c: at for c, at in self._started.items() if now - at < self.interval_s}
        wait = self._started.get(customer_id, -self.interval_s) + self.interval_s - now
        if wait <= 0:
            start()
        else:
            asyncio.get_running_loop().call_later(wait, start)


class SettlementFailed(Exception):
    """Settling failed; the hold was voided and the request recorded as settlement_failed."""


@dataclass(frozen=True)
class Ledgers:
    """What every request's settlement in one process shares."""

    hold_ttl: timedelta
    touches: KeyTouches
    tasks: DetachedTasks
    alerts: AlertChecks = field(default_factory=AlertChecks)
    # The same throttle for the auto top-up trigger (billing/payments/autotopup.py).
    topups: AlertChecks = field(default_factory=AlertChecks)


class Settlement:
    """One request's hold, and the claim that lets exactly one ending resolve it.

    State: unclaimed -> claimed, moved only by claim() on the event-loop thread, so no lock is
    needed and no metering thread ever decides who settles. The winner then settles (finish,
    settle, settle_detached) or voids (void_detached); a loser does nothing at all.
    """

    def __init__(self, call: Call, store: MeteringStore, shared: Ledgers) -> None:
        self.call = call
        # The store (engine, threads) the request's metering runs on, fixed at its reservation.
        self.store = store
        self._shared = shared
        self._claimed = False
        self.hold_id: int | None = None
        # Set when the hold was placed on the hot path: what settling it needs, without a re-read.
        self.hold: PlacedHold | None = None
        # What the client is told of its money (x-credits-*): the available balance after the
        # hold (streams), and the posted balance after the settlement, both without a read.
        self.available_micros: int | None = None
        self.balance_after_micros: int | None = None
        # Set once the settlement ran: True when it charged (posted), False when it voided.
        self.billed: bool | None = None
        # Set by a settlement that charged a workspace with a budget or low-balance alert.
        self._alerts_due = False
        # Set by a settlement that charged a workspace with an active auto top-up rule.
        self._topup_due = False

    # --------------------------------------------------------------------------- the claim

    def claim(self) -> bool:
        """True for the first ending that asks, False for every later one."""
        if self._claimed:
            return False
        self._claimed = True
        return True

    @property
    def claimed(self) -> bool:
        return self._claimed

    async def finish(self, outcome: Outcome) -> int:
        """Claim, then settle (or void) and record the request; returns the price charged.

        Only the first ending of a non-streamed request calls this, so losing the claim here is
        a bug, not a race: it raises rather than settle twice."""
        if not self.claim():
            raise RuntimeError(f"{self.call.request_id} was already claimed")
        return await self.settle(outcome)

    async def settle(self, outcome: Outcome) -> int:
        """The claim holder's settlement (the relay claims when it starts). If the request is
        cancelled while this runs in its thread, the thread still completes it."""
        self._check_claimed()
        charged: int = await self.store.workers.run(self._finish_sync, outcome)
        if self._alerts_due:
            # After the commit, on a task of its own: the response does not wait for it.
            self._shared.alerts.request(
                self.call.key.customer_id, lambda: self.detach(self._budget_alerts_sync)
            )
        if self._topup_due:
            # A payment provider may be called: on a plain thread, never a metering one. At
            # most one trigger per workspace every ALERT_CHECK_INTERVAL_S, as for the alerts.
            self._shared.topups.request(
                self.call.key.customer_id,
                lambda: self._shared.tasks.spawn(asyncio.to_thread(self._autotopup_sync)),
            )
        return charged

    def settle_detached(self, outcome_of: Callable[[], Outcome]) -> None:
        """The claim holder's settlement from a task no cancellation can reach: the client left
        mid-stream and the generator is being cancelled. outcome_of runs on the metering thread
        (an estimate over the relayed text is not event-loop work)."""
        self._check_claimed()

        def finish_detached(connection: Any) -> None:
            self._finish_sync(connection, outcome_of())
            if self._alerts_due:  # already off the request's path
                self._budget_alerts_sync(connection)
            if self._topup_due:  # a rare path (the client left mid-stream): run it here
                self._autotopup_sync()

        self.detach(finish_detached)

    def void_detached(self, outcome: Outcome | None = None) -> bool:
        """Claim and, if won, release the hold of a request that ended without an answer to
        meter (the gateway failed, or the client left before the stream began). Returns whether
        the claim was won: the winner also owns the rest of the cleanup."""
        if not self.claim():
            return False
        self.detach(self._void_sync, outcome or failed(500))
        return True

    def detach(self, work: Callable[..., Any], *args: Any) -> None:
        """Run work(connection, *args) on a metering thread from a task no cancellation can
        reach (a queued job runs to the end in any case)."""
        self._shared.tasks.spawn(self.store.workers.run(work, *args))

    def _check_claimed(self) -> None:
        if not self._claimed:
            raise RuntimeError(f"{self.call.request_id} settles without a claim")

    # ----------------------------------------------------------------------------- the hold

    async def reserve(self, amount: int, terms: HoldTerms | None = None) -> None:
        """Hold the worst case; too little credit is a 402, a spend cap it would pass a 429.
        The 402 says what is available and (from terms) what max_tokens would fit: one read
        after the refusal, on this rare path only."""
        try:
            self.hold_id = await self.store.workers.run(self._reserve_sync, amount)
        except InsufficientCredits:
            record_refused(self.call, "insufficient_credits")
            balance = await self.store.workers.run(self._balance_sync)
            refusal = credit_refusal.insufficient_credits(
                available_micros=balance.available_micros,
                spendable_micros=balance.available_micros + balance.credit_limit_micros,
                required_micros=amount,
                terms=terms,
            )
            refusal.request_id = self.call.request_id
            raise refusal from None
        except BudgetExceeded as exceeded:
            record_refused(self.call, "budget_exceeded")
            refusal = credit_refusal.budget_exceeded(exceeded.message)
            refusal.request_id = self.call.request_id
            raise refusal from None
        except SpendCapReached as reached:
            record_refused(self.call, "spend_cap_reached")
            refusal = errors.rate_limited(reached.message, "spend_cap_reached")
            refusal.request_id = self.call.request_id
            raise refusal from None
        record_held()

    def _balance_sync(self, _connection: Any) -> ledger.Balance:
        with db.session_scope(engine=self.store.engine, readonly=True) as session:
            return ledger.get_balance(session, self.call.key.account_id)

    def _reserve_sync(self, connection: Any, amount: int) -> int | None:
        key = self.call.key
        if amount and key.monthly_spend_cap_micros is None:
            return self._hold(connection, amount)
        # A capped key's hold is counted against its cap in the database, in the hold's own
        # transaction (billing/key_caps.py), so the cap holds across gateway processes. That is
        # the ledger's path: capped keys are rare, and their holds stay off the raw one.
        return self._ledger_hold(amount)

    def _hold(self, connection: Any, amount: int) -> int | None:
        call, store = self.call, self.store
        # A hard budget is counted in the hold's own transaction, on either path.
        hard_budget = call.key.hard_budget
        if amount:
            placed = store.hot.hold(
                connection,
                request_id=call.request_id,
                account_id=call.key.account_id,
                revenue_account_id=store.revenue_account_id(call.key.account_id),
                amount_micros=amount,
                expires_at=utcnow() + self._shared.hold_ttl,
                budget_customer_id=call.key.customer_id if hard_budget else None,
            )
            if placed is not None:
                self.hold = placed
                self.available_micros = placed.available_micros
                return placed.id
        # A free request, or the hold did not simply fit: the ledger decides (402, replay,
        # budget_exceeded).
        return self._ledger_hold(amount)

    def _ledger_hold(self, amount: int) -> int | None:
        call, store = self.call, self.store
        hard_budget = call.key.hard_budget
        cap = call.key.monthly_spend_cap_micros
        with db.session_scope(engine=store.engine) as session:
            hold_id = metering.reserve(
                session,
                request_id=call.request_id,
                account_id=call.key.account_id,
                amount_micros=amount,
                ttl=self._shared.hold_ttl,
                budget_customer_id=call.key.customer_id if hard_budget else None,
                key_cap=(call.key.key_id, cap) if cap is not None else None,
            )
            if call.stream:  # off the hot path: the stream's x-credits-available is read
                balance = ledger.get_balance(session, call.key.account_id)
                self.available_micros = balance.available_micros
            return hold_id

    # ----------------------------------------------------------------------- the settlement

    def _finish_sync(self, connection: Any, outcome: Outcome) -> int:
        """Settle (or void) the hold and write the usage record; returns the price charged."""
        call = self.call
        route = call.route
        price = cost_micros(call.model.price, outcome.usage) if outcome.billable else 0
        upstream_cost = cost_micros(route.cost, outcome.usage) if route and outcome.billable else 0
        record = UsageEntry(
            id=call.request_id,
            customer_id=call.key.customer_id,
            api_key_id=call.key.key_id,
            endpoint=call.client_endpoint,
            upstream_endpoint=call.upstream_endpoint if route else "",
            public_model=call.model.name,
            provider=route.provider_name if route else "",
            upstream_model=route.upstream_model if route else "",
            stream=call.stream,
            http_status=outcome.http_status,
            status=outcome.status,
            prompt_tokens=outcome.usage.prompt_tokens,
            completion_tokens=outcome.usage.completion_tokens,
            cached_tokens=outcome.usage.cached_tokens,
            reasoning_tokens=outcome.usage.reasoning_tokens,
            cache_write_tokens=outcome.usage.cache_write_tokens,
            disputed_completion_tokens=outcome.disputed_completion_tokens,
            usage_source=outcome.usage_source if outcome.billable else "none",
            upstream_cost_micros=upstream_cost,
            latency_ms=ms_since(call.started),
            ttfb_ms=call.ttfb_ms,
            attempts=len(call.attempts),
            attempts_json=json.dumps([a.__dict__ for a in call.attempts]),
        )
        touch = self._shared.touches.due(call.key.key_id)
        try:
            charged = self._settle_in_transaction(connection, outcome, record, price, touch)
            self.billed = outcome.billable
            self._alerts_due = call.key.budget_alerts and charged > 0
            self._topup_due = call.key.autotopup and charged > 0
            record_settled(call, outcome.status, charged)
            return charged
        except Exception:
            self.billed = False
            # Whatever went wrong, the hold is resolved and the request recorded: a settlement
            # that fails must not leave the credit held until expiry, nor the request unseen.
            log.exception("settling %s failed; voiding its hold", call.request_id)
            self._void_after_failed_settlement(record)
            record_settled(call, "settlement_failed", 0)
            raise SettlementFailed() from None

    def _void_after_failed_settlement(self, record: UsageEntry) -> None:
        record.status = "settlement_failed"
        record.http_status = 500  # what the client is told: metering_failed
        record.usage_source = "none"
        record.upstream_cost_micros = 0
        record.unbilled_micros = 0
        try:
            with db.session_scope(engine=self.store.engine) as session:
                metering.cancel(
                    session,
                    hold_id=self.hold_id,
                    account_id=self.call.key.account_id,
                    record=record,
                )
        except Exception:
            # The database is away, or the hold was resolved meanwhile: its expiry is the last
            # resort for the credit, and the log line above names the request.
            log.exception("could not void the hold of %s", self.call.request_id)

    def _settle_in_transaction(
        self, connection: Any, outcome: Outcome, record: UsageEntry, price: int, touch: bool
    ) -> int:
        call, store = self.call, self.store
        if outcome.billable and self.hold is not None:
            stored = store.hot.settle(
                connection, hold=self.hold, price_micros=price, record=record, touch_key=touch
            )
            if stored is not None:
                self.balance_after_micros = stored.balance_after_micros
                return stored.price_micros
        # Voids, prices above the hold, holds that expired meanwhile: the ledger's own path.
        with db.session_scope(engine=store.engine) as session:
            if outcome.billable:
                stored = metering.settle(
                    session,
                    hold_id=self.hold_id,
                    account_id=call.key.account_id,
                    price_micros=price,
                    record=record,
                    touch_key=touch,
                    # A capped key is charged at most its hold, which the cap check admitted.
                    # So is a workspace with a hard budget.
                    overage=call.key.monthly_spend_cap_micros is None and not call.key.hard_budget,
                )
            else:
                stored = metering.cancel(
                    session, hold_id=self.hold_id, account_id=call.key.account_id, record=record
                )
            self.balance_after_micros = stored.balance_after_micros
            return stored.price_micros

    def _budget_alerts_sync(self, _connection: Any) -> None:
        try:
            with db.session_scope(engine=self.store.engine) as session:
                budgets.check_alerts(session, customer_id=self.call.key.customer_id)
        except Exception:
            # The jobs loop's backstop emits whatever alert this missed (same dedupe keys).
            log.exception("budget alert check for %s failed", self.call.key.customer_id)

    def _autotopup_sync(self) -> None:
        try:
            autotopup.trigger(self.call.key.customer_id, source="gateway")
        except Exception:
            # The jobs loop's backstop runs the same (idempotent) claim on its next pass.
            log.exception("auto top-up check for %s failed", self.call.key.customer_id)

    def _void_sync(self, connection: Any, outcome: Outcome) -> None:
        try:
            self._finish_sync(connection, outcome)
        except Exception:
            self.billed = False
            # Already settled, or the database is away: the hold's expiry is the last resort.
            log.warning("could not void the hold of %s", self.call.request_id, exc_info=True)
