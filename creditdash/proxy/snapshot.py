"""The in-memory catalog snapshot every proxied request reads: models, prices, routes and
providers with their decrypted secrets.

It is rebuilt from the database at most every SNAPSHOT_TTL_S seconds, so a price or route change
reaches every gateway process within that time without a database read per request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlmodel import Session, col

from creditdash.catalog.models import FAILURE_KINDS, Provider, PublicModel, Route
from creditdash.catalog.prices import Price
from creditdash.catalog.secrets import KEY_PURPOSE, decrypt_headers
from creditdash.core import crypto, db

SNAPSHOT_TTL_S = 5.0


@dataclass(frozen=True)
class RouteTarget:
    route_id: int
    provider_name: str
    provider_kind: str
    base_url: str
    api_key: str = field(repr=False)
    timeout_s: int
    extra_headers: dict[str, str]
    upstream_model: str
    priority: int
    weight: int
    cost: Price
    # An OpenAI-kind upstream with its own /v1/responses (Responses requests pass through).
    serves_responses: bool = False
    # The field the upstream takes the output cap in (catalog.models.OUTPUT_CAP_PARAMS).
    output_cap_param: str = "auto"


@dataclass(frozen=True)
class FallbackPolicy:
    fallback_on: frozenset[str] = frozenset(FAILURE_KINDS)
    max_attempts: int = 3
    attempt_timeout_s: int | None = None
    cooldown_failures: int = 3
    cooldown_s: int = 30


@dataclass(frozen=True)
class ModelEntry:
    name: str
    price: Price
    max_output_tokens: int
    routes: tuple[RouteTarget, ...]
    created: int
    policy: FallbackPolicy = FallbackPolicy()
    max_media_parts: int = 16
    media_part_tokens: int = 3000


@dataclass(frozen=True)
class Snapshot:
    models: dict[str, ModelEntry]
    loaded_at: float


def load_snapshot(session: Session) -> Snapshot:
    providers = {
        p.id: p
        for p in session.execute(select(Provider).where(col(Provider.enabled).is_(True))).scalars()
    }
    models: dict[str, ModelEntry] = {}
    public = session.execute(
        select(PublicModel).where(col(PublicModel.enabled).is_(True))
    ).scalars()
    routes_by_model: dict[int, list[RouteTarget]] = {}
    for route in session.execute(select(Route).where(col(Route.enabled).is_(True))).scalars():
        provider = providers.get(route.provider_id)
        if provider is None:
            continue
        routes_by_model.setdefault(route.model_id, []).append(_target(route, provider))
    for model in public:
        targets = sorted(routes_by_model.get(model.id or 0, []), key=lambda r: r.priority)
        models[model.name] = ModelEntry(
            name=model.name,
            price=Price(
                model.input_price_micros_per_mtok,
                model.output_price_micros_per_mtok,
                model.cached_input_price_micros_per_mtok,
                model.request_fee_micros,
                model.cache_write_price_micros_per_mtok,
            ),
            max_output_tokens=model.max_output_tokens,
            routes=tuple(targets),
            created=int(model.created_at.timestamp()),
            max_media_parts=model.max_media_parts,
            media_part_tokens=model.media_part_tokens,
            policy=FallbackPolicy(
                fallback_on=frozenset(k for k in model.fallback_on.split(",") if k),
                max_attempts=model.max_attempts,
                attempt_timeout_s=model.attempt_timeout_s,
                cooldown_failures=model.cooldown_failures,
                cooldown_s=model.cooldown_s,
            ),
        )
    return Snapshot(models=models, loaded_at=time.monotonic())


def _target(route: Route, provider: Provider) -> RouteTarget:
    api_key = (
        crypto.decrypt(provider.api_key_encrypted, purpose=KEY_PURPOSE)
        if provider.api_key_encrypted
        else ""
    )
    return RouteTarget(
        route_id=route.id or 0,
        provider_name=provider.name,
        provider_kind=provider.kind,
        base_url=provider.base_url,
        api_key=api_key,
        timeout_s=provider.timeout_s,
        extra_headers=decrypt_headers(provider.extra_headers_json),
        upstream_model=route.upstream_model,
        priority=route.priority,
        weight=route.weight,
        cost=Price(
            route.input_cost_micros_per_mtok,
            route.output_cost_micros_per_mtok,
            route.cached_input_cost_micros_per_mtok,
            route.request_cost_micros,
            route.cache_write_cost_micros_per_mtok,
        ),
        serves_responses=provider.serves_responses,
        output_cap_param=route.output_cap_param,
    )


class CatalogCache:
    """The current snapshot, refreshed in a worker thread when older than its TTL."""

    def __init__(self, ttl_s: float = SNAPSHOT_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._snapshot: Snapshot | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() - snapshot.loaded_at < self.ttl_s:
            return snapshot
        async with self._lock:
            snapshot = self._snapshot
            if snapshot is None or time.monotonic() - snapshot.loaded_at >= self.ttl_s:
                snapshot = await asyncio.to_thread(_load_fresh)
                self._snapshot = snapshot
        return snapshot

    def invalidate(self) -> None:
        self._snapshot = None


def _load_fresh() -> Snapshot:
    with db.session_scope(readonly=True) as session:
        return load_snapshot(session)
