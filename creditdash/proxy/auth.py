"""Customer key authentication with a short in-process cache.

A key is looked up by its SHA-256; the answer (including "no such key") is cached for
KEY_CACHE_TTL_S seconds, so a revoked key or a suspended customer stops within that time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import col

from creditdash.accounts.api_keys import find_unrevoked_key, hash_key
from creditdash.accounts.models import Customer
from creditdash.billing.budgets_models import Budget
from creditdash.billing.models import LedgerAccount
from creditdash.billing.payments.autotopup import has_active_rule
from creditdash.core import db
from creditdash.proxy.errors import GatewayError

KEY_CACHE_TTL_S = 5.0
KEY_CACHE_MAX = 10_000


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    customer_id: str
    account_id: int
    rpm_limit: int | None
    concurrency_limit: int | None
    monthly_spend_cap_micros: int | None
    allowed_models: frozenset[str] | None
    # A suspended workspace's keys are known but refused (403), unlike unknown keys (401).
    suspended: bool = False
    # The workspace's budget, cached like the rest: a hard budget sends its holds through the
    # ledger's path (billing/budget_holds.py); any budget or low-balance alert asks for the
    # alert check after settlement. Workspaces without one take the hot path, unchanged.
    hard_budget: bool = False
    budget_alerts: bool = False
    # The workspace has an active auto top-up rule: a settlement that charged asks for the
    # top-up check afterwards, off the request's path (billing/payments/autotopup.py).
    autotopup: bool = False

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


def lookup_key(raw_key: str) -> KeyInfo | None:
    with db.session_scope(readonly=True) as session:
        found = find_unrevoked_key(session, raw_key)
        if found is None:
            return None
        key, status = found
        account_id = session.execute(
            select(col(LedgerAccount.id)).where(col(LedgerAccount.customer_id) == key.customer_id)
        ).scalar_one()
        workspace_models = session.execute(
            select(col(Customer.allowed_models_json)).where(col(Customer.id) == key.customer_id)
        ).scalar_one()
        budget = session.execute(
            select(
                col(Budget.monthly_budget_micros), col(Budget.hard), col(Budget.low_balance_micros)
            ).where(col(Budget.customer_id) == key.customer_id)
        ).first()
        # Both the key's and the workspace's allow-lists apply; None means no restriction.
        allowed: set[str] | None = None
        for listed in (key.allowed_models_json, workspace_models):
            if listed is not None:
                names = set(json.loads(listed))
                allowed = names if allowed is None else allowed & names
        return KeyInfo(
            key_id=key.id,
            customer_id=key.customer_id,
            account_id=int(account_id),
            rpm_limit=key.rpm_limit,
            concurrency_limit=key.concurrency_limit,
            monthly_spend_cap_micros=key.monthly_spend_cap_micros,
            allowed_models=frozenset(allowed) if allowed is not None else None,
            suspended=status != "active",
            hard_budget=budget is not None and budget[0] is not None and bool(budget[1]),
            budget_alerts=budget is not None and (budget[0] is not None or budget[2] is not None),
            autotopup=has_active_rule(session, key.customer_id),
        )


def _refuse_suspended(info: KeyInfo | None) -> KeyInfo | None:
    if info is not None and info.suspended:
        raise GatewayError(
            403,
            "This workspace is suspended; contact the operator.",
            "permission_error",
            "workspace_suspended",
        )
    return info


class KeyCache:
    def __init__(self, ttl_s: float = KEY_CACHE_TTL_S, max_entries: int = KEY_CACHE_MAX) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, KeyInfo | None]] = OrderedDict()

    async def authenticate(self, authorization: str | None) -> KeyInfo | None:
        """The key of an `Authorization: Bearer <key>` header value."""
        if not authorization or authorization[:7].lower() != "bearer ":
            return None
        return await self.authenticate_key(authorization[7:])

    async def authenticate_key(self, raw: str) -> KeyInfo | None:
        """The key itself, as an `x-api-key` header carries it (Anthropic's clients)."""
        raw = raw.strip()
        if not raw or len(raw) > 200:
            return None
        digest = hash_key(raw)
        now = time.monotonic()
        cached = self._entries.get(digest)
        if cached is not None and cached[0] > now:
            return _refuse_suspended(cached[1])
        info = await asyncio.to_thread(lookup_key, raw)
        self._entries[digest] = (now + self.ttl_s, info)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return _refuse_suspended(info)

    def clear(self) -> None:
        self._entries.clear()
