"""`prices sync`: route costs checked against the price data bundled with genai-prices.

Only the data inside the installed package is read: the snapshot is built here from
`genai_prices.data`, never from the library's current snapshot (which its auto-updater could
have replaced with a download), and nothing here starts that updater. So a sync is as
repeatable as the installed version, which every finding records.

For each route on an OpenAI- or Anthropic-kind provider, the route's upstream model is looked
up (the provider the base URL names, else the one its kind names); its USD prices per 1M
tokens become micros of a credit at CREDITDASH_PRICE_SYNC_CREDITS_PER_USD, exactly (Decimal),
rounded up to a whole micro where a price has more digits than that. A cost that differs from
what the route will cost (its pending schedule, else its current cost) becomes a cost schedule
at the effective time, the same schedules admins write. The margin review then flags a route
whose model's price is below its new cost, and a route whose model the data does not know;
with CREDITDASH_PRICE_SYNC_GATE=close (the default) a flagged route is closed to traffic at
once (disabled, as an admin would) until an admin accepts the finding. Every finding waits for
an accept or a reject on the admin prices page, and every step is audited.

Running it twice changes nothing the second time: an unchanged cost is not scheduled again, a
model already flagged is not flagged again, and a cost an admin rejected is not proposed again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from functools import lru_cache
from importlib.metadata import version
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session, col

from creditdash.catalog.cost_schedules import (
    add_cost_schedule,
    apply_due_cost_schedules,
    cancel_cost_schedule,
    describe_cost,
    pending_cost,
    route_cost,
    route_label,
    same_cost,
    schedule_cost,
    set_route_cost,
)
from creditdash.catalog.models import (
    ANTHROPIC_KINDS,
    SANDBOX_KINDS,
    PriceSyncReview,
    Provider,
    PublicModel,
    Route,
    RouteCostSchedule,
)
from creditdash.catalog.prices import Price, losing_mix
from creditdash.core import db
from creditdash.core.audit import Actor, record
from creditdash.core.errors import AlreadyResolved, NotFound, ValidationFailed
from creditdash.core.settings import get_settings
from creditdash.core.timeutil import utcnow

MICROS = Decimal(1_000_000)
# An effective time a little in the past is "now" typed slowly; further back is a mistake.
PAST_SLACK = timedelta(minutes=5)


def data_version() -> str:
    return f"genai-prices {version('genai-prices')}"


@lru_cache(maxsize=1)
def _bundled() -> Any:
    """The package's own data as a snapshot of its own, apart from the library's global one."""
    from genai_prices import data
    from genai_prices.data_snapshot import DataSnapshot

    snapshot = DataSnapshot(providers=list(data.providers), from_auto_update=False)
    assert not snapshot.from_auto_update
    return snapshot


@dataclass(frozen=True)
class DataCost:
    """What the data says a model costs, converted, and what the conversion left out."""

    matched_model: str
    cost: Price
    notes: tuple[str, ...] = ()


def _base(value: Any) -> tuple[Decimal | None, bool]:
    """A price and whether it was tiered (the base tier is the one a route can hold)."""
    if value is None:
        return None, False
    if isinstance(value, Decimal):
        return value, False
    return Decimal(value.base), True


def usd_to_micros(usd: Decimal, *, per: int = 1, rate: Decimal | None = None) -> int:
    """USD (per `per` units) in micros of a credit per unit, rounded up to a whole micro: a
    cost is never understated by the conversion."""
    rate = get_settings().price_sync_credits_per_usd if rate is None else rate
    exact = usd * rate * MICROS / per
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


def _lookup(provider: Provider, upstream_model: str, at: datetime) -> DataCost | None:
    snapshot = _bundled()
    try:
        found = snapshot.find_provider(None, None, provider.base_url)
    except LookupError:
        kind_id = "anthropic" if provider.kind in ANTHROPIC_KINDS else "openai"
        found = snapshot.find_provider(None, kind_id, None)
    try:
        _, model = snapshot.find_provider_model(upstream_model, found, None, None)
    except LookupError:
        return None
    prices = model.get_prices(at)
    input_usd, tiered_in = _base(prices.input_mtok)
    if input_usd is None:
        return None  # priced per image, second or character: not a token route
    output_usd, tiered_out = _base(prices.output_mtok)
    cached_usd, tiered_cached = _base(prices.cache_read_mtok)
    write_usd, tiered_write = _base(prices.cache_write_mtok)
    requests_usd, _ = _base(prices.requests_kcount)
    notes = []
    if tiered_in or tiered_out or tiered_cached or tiered_write:
        notes.append("tiered by prompt length: the first tier's prices are used")
    cost = Price(
        usd_to_micros(input_usd),
        usd_to_micros(output_usd or Decimal(0)),
        usd_to_micros(cached_usd) if cached_usd is not None else usd_to_micros(input_usd),
        usd_to_micros(requests_usd, per=1000) if requests_usd is not None else 0,
        usd_to_micros(write_usd) if write_usd is not None else None,
    )
    return DataCost(f"{found.id}/{model.id}", cost, tuple(notes))


def _cost_json(cost: Price | None) -> dict[str, int | None]:
    if cost is None:
        return {}
    return {
        "input_micros_per_mtok": cost.input_micros_per_mtok,
        "cached_input_micros_per_mtok": cost.cached_input_micros_per_mtok,
        "cache_write_micros_per_mtok": cost.cache_write_micros_per_mtok,
        "output_micros_per_mtok": cost.output_micros_per_mtok,
        "request_micros": cost.request_fee_micros,
    }


def _cost_from_json(raw: str) -> Price | None:
    data = json.loads(raw or "{}")
    if not data:
        return None
    return Price(
        data["input_micros_per_mtok"],
        data["output_micros_per_mtok"],
        data["cached_input_micros_per_mtok"],
        data["request_micros"],
        data["cache_write_micros_per_mtok"],
    )


@dataclass(frozen=True)
class SyncLine:
    """One route's outcome: unchanged, changed (scheduled), unknown_model (flagged),
    skipped (a sandbox route), or already_flagged / already_rejected (nothing new)."""

    route: str
    outcome: str
    matched_model: str = ""
    before: dict[str, int | None] = field(default_factory=dict)
    after: dict[str, int | None] = field(default_factory=dict)
    losing: bool = False
    loss_mix: str = ""
    flagged: bool = False
    closed: bool = False
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyncResult:
    data_version: str
    effective_at: datetime
    gate: str
    dry_run: bool
    lines: list[SyncLine]

    def as_json(self) -> dict[str, Any]:
        return {
            "data_version": self.data_version,
            "effective_at": self.effective_at.isoformat(),
            "gate": self.gate,
            "dry_run": self.dry_run,
            "routes": [{**asdict(line), "notes": list(line.notes)} for line in self.lines],
        }


def sync_prices(
    session: Session,
    *,
    actor: Actor,
    effective_at: datetime | None = None,
    dry_run: bool = False,
) -> SyncResult:
    """Compare every route with the bundled data and propose (or, dry, only show) the changes."""
    now = utcnow()
    effective = effective_at or now
    if effective.tzinfo is None:
        raise ValidationFailed("the effective time needs a time zone (UTC)")
    if effective < now - PAST_SLACK:
        raise ValidationFailed("the effective time cannot be in the past")
    gate = get_settings().price_sync_gate
    rows = session.execute(
        select(Route, PublicModel, Provider)
        .join(PublicModel, col(PublicModel.id) == col(Route.model_id))
        .join(Provider, col(Provider.id) == col(Route.provider_id))
        .order_by(col(PublicModel.name), col(Provider.name), col(Route.upstream_model))
    ).all()
    # A dry run walks the very same steps inside a savepoint it then rolls back.
    trial = session.begin_nested()
    try:
        lines = [
            _sync_route(session, route, model, provider, effective, gate, actor)
            for route, model, provider in rows
        ]
        if not dry_run:
            apply_due_cost_schedules(session, now=now)
    except BaseException:
        trial.rollback()
        raise
    if dry_run:
        trial.rollback()
    else:
        trial.commit()
    return SyncResult(data_version(), effective, gate, dry_run, lines)


def _sync_route(
    session: Session,
    route: Route,
    model: PublicModel,
    provider: Provider,
    effective: datetime,
    gate: str,
    actor: Actor,
) -> SyncLine:
    label = route_label(model.name, provider.name, route.upstream_model)
    if provider.kind in SANDBOX_KINDS:
        return SyncLine(
            label, "skipped", notes=("the built-in sandbox costs what the catalog says",)
        )
    assert route.id is not None
    found = _lookup(provider, route.upstream_model, effective)
    if found is None:
        return _flag_unknown(session, route, label, gate, actor)
    pending = pending_cost(session, route_id=route.id)
    expected = schedule_cost(pending) if pending is not None else route_cost(route)
    if same_cost(expected, found.cost):
        return SyncLine(label, "unchanged", found.matched_model, _cost_json(expected),
                        _cost_json(found.cost), notes=found.notes)  # fmt: skip
    if _was_rejected(session, route.id, found.cost):
        return SyncLine(label, "already_rejected", found.matched_model, _cost_json(expected),
                        _cost_json(found.cost), notes=found.notes)  # fmt: skip
    price = Price(
        model.input_price_micros_per_mtok,
        model.output_price_micros_per_mtok,
        model.cached_input_price_micros_per_mtok,
        model.request_fee_micros,
        model.cache_write_price_micros_per_mtok,
    )
    loss = losing_mix(price, found.cost)
    closed = loss is not None and gate == "close" and route.enabled
    schedule = add_cost_schedule(
        session,
        route=route,
        cost=found.cost,
        effective_at=effective,
        actor=actor,
        source="sync",
        label=label,
    )
    review = PriceSyncReview(
        route_id=route.id,
        kind="cost_change",
        schedule_id=schedule.id,
        matched_model=found.matched_model[:200],
        data_version=data_version(),
        before_json=json.dumps(_cost_json(expected)),
        after_json=json.dumps(_cost_json(found.cost)),
        losing=loss is not None,
        loss_mix="" if loss is None else loss.mix,
        closed=closed,
        route_was_enabled=route.enabled,
    )
    _file(session, review, route, label, actor)
    return SyncLine(
        label,
        "changed",
        found.matched_model,
        _cost_json(expected),
        _cost_json(found.cost),
        losing=loss is not None,
        loss_mix="" if loss is None else loss.mix,
        flagged=loss is not None,
        closed=closed,
        notes=found.notes,
    )


def _flag_unknown(session: Session, route: Route, label: str, gate: str, actor: Actor) -> SyncLine:
    already = session.execute(
        select(col(PriceSyncReview.id)).where(
            col(PriceSyncReview.route_id) == route.id, col(PriceSyncReview.kind) == "unknown_model"
        )
    ).first()
    if already is not None:
        return SyncLine(label, "already_flagged", flagged=True)
    assert route.id is not None
    closed = gate == "close" and route.enabled
    review = PriceSyncReview(
        route_id=route.id,
        kind="unknown_model",
        data_version=data_version(),
        before_json=json.dumps(_cost_json(route_cost(route))),
        closed=closed,
        route_was_enabled=route.enabled,
    )
    _file(session, review, route, label, actor)
    note = f"{data_version()} has no price for this model"
    return SyncLine(label, "unknown_model", before=_cost_json(route_cost(route)), flagged=True,
                    closed=closed, notes=(note,))  # fmt: skip


def _was_rejected(session: Session, route_id: int, cost: Price) -> bool:
    rejected = session.execute(
        select(col(PriceSyncReview.after_json)).where(
            col(PriceSyncReview.route_id) == route_id,
            col(PriceSyncReview.kind) == "cost_change",
            col(PriceSyncReview.status) == "rejected",
        )
    ).scalars()
    return any(
        (old := _cost_from_json(raw)) is not None and same_cost(old, cost) for raw in rejected
    )


def _file(
    session: Session, review: PriceSyncReview, route: Route, label: str, actor: Actor
) -> None:
    """Store a finding, close the route when the gate says so, and audit both."""
    session.add(review)
    if review.closed:
        route.enabled = False
        session.add(route)
    session.flush()
    record(
        session,
        actor=actor,
        action="price_sync.flagged"
        if review.losing or review.kind == "unknown_model"
        else "price_sync.proposed",
        target_type="route",
        target_id=label[:80],
        before=json.loads(review.before_json),
        after={
            **json.loads(review.after_json),
            "kind": review.kind,
            "review_id": review.id,
            "losing_on": review.loss_mix,
            "closed": review.closed,
            "data": review.data_version,
        },
    )


@dataclass(frozen=True)
class ReviewView:
    id: int
    route: str
    kind: str
    matched_model: str
    data_version: str
    before: Price | None
    after: Price | None
    effective_at: datetime | None
    losing: bool
    loss_mix: str
    closed: bool
    status: str
    created_at: datetime


def list_reviews(
    session: Session, *, status: str = "pending", limit: int = 200
) -> list[ReviewView]:
    rows = session.execute(
        select(
            PriceSyncReview,
            Route,
            col(PublicModel.name),
            col(Provider.name),
            col(RouteCostSchedule.effective_at),
        )
        .join(Route, col(Route.id) == col(PriceSyncReview.route_id))
        .join(PublicModel, col(PublicModel.id) == col(Route.model_id))
        .join(Provider, col(Provider.id) == col(Route.provider_id))
        .outerjoin(RouteCostSchedule, col(RouteCostSchedule.id) == col(PriceSyncReview.schedule_id))
        .where(col(PriceSyncReview.status) == status)
        .order_by(col(PriceSyncReview.id))
        .limit(limit)
    ).all()
    return [
        ReviewView(
            r.id or 0,
            route_label(model, provider, route.upstream_model),
            r.kind,
            r.matched_model,
            r.data_version,
            _cost_from_json(r.before_json),
            _cost_from_json(r.after_json),
            at,
            r.losing,
            r.loss_mix,
            r.closed,
            r.status,
            r.created_at,
        )
        for r, route, model, provider, at in rows
    ]


def decide_review(session: Session, *, review_id: int, accept: bool, actor: Actor) -> str:
    """Accept or reject one pending finding, once (a conditional status change).

    Accept: the proposed cost stands (its schedule applies, or has applied, at its time), a
    losing route is marked as acknowledged, and a route the gate closed is reopened as it was.
    Reject: a cost change's schedule is cancelled (or, when it already applied, the cost before
    it is put back) and a route the gate closed reopens at that reviewed cost; an unknown model
    stays closed (disabled), as nothing says what it costs. Returns what was done, in words."""
    review = session.get(PriceSyncReview, review_id)
    if review is None:
        raise NotFound(f"no price sync finding {review_id}")
    claimed = session.execute(
        update(PriceSyncReview)
        .where(col(PriceSyncReview.id) == review_id, col(PriceSyncReview.status) == "pending")
        .values(
            status="accepted" if accept else "rejected",
            decided_at=utcnow(),
            decided_by_label=actor.label[:200],
        )
        .execution_options(synchronize_session=False)
    )
    if db.rowcount(claimed) != 1:
        raise AlreadyResolved(f"price sync finding {review_id} was already decided")
    route = session.get(Route, review.route_id)
    assert route is not None
    label = _label_of(session, route)
    before_enabled = route.enabled
    done = _accept(review, route) if accept else _reject(session, review, route, actor, label)
    session.add(route)
    session.flush()
    record(
        session,
        actor=actor,
        action="price_sync.accepted" if accept else "price_sync.rejected",
        target_type="route",
        target_id=label[:80],
        before={"enabled": before_enabled, "review_id": review_id, "kind": review.kind},
        after={"enabled": route.enabled, "done": done},
    )
    return done


def _accept(review: PriceSyncReview, route: Route) -> str:
    if review.losing and route.negative_margin_acknowledged_at is None:
        route.negative_margin_acknowledged_at = utcnow()
    if review.closed:
        route.enabled = review.route_was_enabled
        return "accepted; the route is open again"
    return "accepted"


def _reject(
    session: Session, review: PriceSyncReview, route: Route, actor: Actor, label: str
) -> str:
    if review.kind == "unknown_model":
        route.enabled = False
        return "rejected; the route stays closed until an admin enables it"
    assert review.schedule_id is not None
    reason = f"price sync finding {review.id} rejected"
    if not cancel_cost_schedule(
        session, schedule_id=review.schedule_id, actor=actor, reason=reason
    ):
        before = _cost_from_json(review.before_json)
        if before is not None:
            set_route_cost(
                session, route=route, cost=before, actor=actor, label=label, reason=reason
            )
    if review.closed:
        route.enabled = review.route_was_enabled
        return "rejected; the cost before stands and the route is open again"
    return "rejected; the cost before stands"


def _label_of(session: Session, route: Route) -> str:
    model = session.get(PublicModel, route.model_id)
    provider = session.get(Provider, route.provider_id)
    assert model is not None and provider is not None
    return route_label(model.name, provider.name, route.upstream_model)


def describe_line(line: SyncLine) -> str:
    """One line of the command's text output."""
    text = f"{line.route:<48} {line.outcome}"
    if line.outcome in ("changed", "unchanged", "already_rejected") and line.after:
        before = describe_cost(_cost_from_json(json.dumps(line.before)) or Price(0, 0, 0))
        after = describe_cost(_cost_from_json(json.dumps(line.after)) or Price(0, 0, 0))
        if line.outcome != "unchanged":
            changes = [f"{k} {before.get(k, '-')} -> {v}" for k, v in after.items()
                       if before.get(k) != v]  # fmt: skip
            text += " (" + "; ".join(changes) + ")"
    if line.flagged:
        text += "  FLAGGED" + (f" (loses money on {line.loss_mix})" if line.loss_mix else "")
    if line.closed:
        text += "  CLOSED until accepted"
    for note in line.notes:
        text += f"\n    note: {note}"
    return text
