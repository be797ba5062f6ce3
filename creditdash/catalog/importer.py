"""Importing the catalog from YAML, all or nothing: providers, public models with their prices,
routes with their costs, and the margin review of each route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlmodel import Session, col

from creditdash.catalog.models import (
    FAILURE_KINDS,
    OUTPUT_CAP_PARAMS,
    PROVIDER_KINDS,
    SANDBOX_BASE_URL,
    SANDBOX_KINDS,
    Provider,
    PublicModel,
    Route,
)
from creditdash.catalog.prices import (
    REFERENCE_MIX,
    Loss,
    Price,
    cost_micros,
    losing_mix,
    margin_basis_points,
)
from creditdash.catalog.secrets import KEY_PURPOSE, encrypt_headers
from creditdash.catalog.urlguard import check_base_url
from creditdash.core import crypto
from creditdash.core.audit import CLI, Actor, record
from creditdash.core.errors import ValidationFailed
from creditdash.core.money import format_credits, parse_credits
from creditdash.core.settings import get_settings
from creditdash.core.timeutil import utcnow

# The token mix margins are quoted for: 1,000 prompt tokens (none cached) and 500 completion.


def _credits_per_mtok(value: Any, field: str) -> int:
    """A catalog amount: a quoted decimal string ("0.60"), or a plain whole number (1).

    An unquoted 0.60 reaches us as a binary float whose spelling is lost, so it is refused
    rather than guessed at; _CatalogLoader leaves int spellings other than plain digits (1_0,
    0x10, 010) as strings, which parse_credits then refuses."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        kind = "a number" if isinstance(value, float) else type(value).__name__
        raise ValidationFailed(
            f'{field} is {kind}; write the amount of credits in quotes, e.g. "0.60"'
        )
    micros = parse_credits(str(value), field=field)
    return micros


class PriceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_per_mtok: Any
    output_per_mtok: Any
    cached_input_per_mtok: Any | None = None
    # Input written to a provider's prompt cache; absent: charged (or costed) as input.
    cache_write_per_mtok: Any | None = None
    per_request: Any | None = None

    def to_price(self, what: str = "price") -> Price:
        input_micros = _credits_per_mtok(self.input_per_mtok, f"{what}.input_per_mtok")
        cached = self.cached_input_per_mtok
        return Price(
            input_micros,
            _credits_per_mtok(self.output_per_mtok, f"{what}.output_per_mtok"),
            _credits_per_mtok(cached, f"{what}.cached_input_per_mtok")
            if cached is not None
            else input_micros,
            _credits_per_mtok(self.per_request, f"{what}.per_request")
            if self.per_request is not None
            else 0,
            _credits_per_mtok(self.cache_write_per_mtok, f"{what}.cache_write_per_mtok")
            if self.cache_write_per_mtok is not None
            else None,
        )


class ProviderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80)
    base_url: str = Field(min_length=1, max_length=500)
    api_key: str = Field(default="", max_length=4000)
    kind: str = "openai"
    timeout_s: int = Field(default=300, gt=0, le=3600)
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    # An OpenAI-kind upstream that serves /v1/responses itself.
    responses: bool = False

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in PROVIDER_KINDS:
            raise ValueError(f"kind must be one of {', '.join(PROVIDER_KINDS)}")
        return value


class RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str
    upstream_model: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=1, ge=0, le=1000)
    weight: int = Field(default=1, ge=0, le=1000)
    enabled: bool = True
    cost: PriceSpec
    # The field the upstream takes the output cap in (OUTPUT_CAP_PARAMS).
    output_cap_param: str = "auto"
    # A route that costs more than the model's price is refused unless this says yes.
    acknowledge_negative_margin: bool = False

    @field_validator("output_cap_param")
    @classmethod
    def _cap_param(cls, value: str) -> str:
        if value not in OUTPUT_CAP_PARAMS:
            raise ValueError(f"output_cap_param must be one of {', '.join(OUTPUT_CAP_PARAMS)}")
        return value


class CooldownSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failures: int = Field(default=3, ge=1, le=1000)
    seconds: int = Field(default=30, ge=1, le=86_400)


class FallbackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Not "on": YAML 1.1 reads a bare `on` key as the boolean true.
    fall_through: list[str] = Field(default_factory=lambda: list(FAILURE_KINDS))
    max_attempts: int = Field(default=3, ge=1, le=10)
    attempt_timeout_s: int | None = Field(default=None, gt=0, le=3600)
    cooldown: CooldownSpec = Field(default_factory=CooldownSpec)

    @field_validator("fall_through")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(FAILURE_KINDS))
        if unknown:
            raise ValueError(f"unknown failure kinds {unknown}; use {list(FAILURE_KINDS)}")
        return value


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9._:/@-]+$")
    price: PriceSpec
    max_output_tokens: int = Field(default=4096, gt=0, le=1_000_000)
    # Image and file parts per request (0: text only), each held as media_part_tokens.
    max_media_parts: int = Field(default=16, ge=0, le=500)
    media_part_tokens: int = Field(default=3000, ge=0, le=1_000_000)
    enabled: bool = True
    fallback: FallbackSpec = Field(default_factory=FallbackSpec)
    routes: list[RouteSpec] = Field(min_length=1)


class CatalogSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    providers: list[ProviderSpec] = Field(default_factory=list)
    models: list[ModelSpec] = Field(default_factory=list)


@dataclass(frozen=True)
class MarginLine:
    model: str
    provider: str
    upstream_model: str
    # On the reference mix (prices.REFERENCE_MIX).
    price_micros: int
    cost_micros: int
    margin_bps: int | None
    # The first review mix the route loses money on (prices.REVIEW_MIXES), if any.
    loss: Loss | None = None

    @property
    def losing(self) -> bool:
        return self.loss is not None

    def describe(self) -> str:
        margin = "n/a" if self.margin_bps is None else f"{Decimal(self.margin_bps) / 100:.2f}%"
        flag = "  NEGATIVE" if self.losing else ""
        return (
            f"{self.model:<28} via {self.provider}/{self.upstream_model:<24} "
            f"price {format_credits(self.price_micros)} cost {format_credits(self.cost_micros)} "
            f"margin {margin}{flag}"
        )


def worst_routes(margins: list[MarginLine]) -> list[MarginLine]:
    """Per model, the route with the lowest margin (the one to watch), for models with several."""
    by_model: dict[str, list[MarginLine]] = {}
    for line in margins:
        by_model.setdefault(line.model, []).append(line)
    return [
        min(lines, key=lambda line: line.price_micros - line.cost_micros)
        for lines in by_model.values()
        if len(lines) > 1
    ]


class _CatalogLoader(yaml.SafeLoader):
    """SafeLoader, except that only plain decimal digits (optionally after "-") make an int.

    YAML 1.1 also reads 1_0 as 10, 0x10 as 16, 010 as 8 and 1:30 as 90; those stay strings
    here, so an amount spelt that way is refused by the money parser instead of read as a
    number nobody meant."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | str:
    value = str(loader.construct_scalar(node))
    return int(value, 10) if _PLAIN_INT.match(value) else value


_PLAIN_INT = re.compile(r"\A-?[0-9]+\Z", re.ASCII)
_CatalogLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def parse_catalog(text: str) -> CatalogSpec:
    try:
        raw = yaml.load(text, Loader=_CatalogLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"catalog is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValidationFailed("catalog must be a mapping with providers and models")
    try:
        spec = CatalogSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValidationFailed(f"catalog entry {where}: {first['msg']}") from None
    return spec


def import_catalog(session: Session, spec: CatalogSpec, *, actor: Actor = CLI) -> list[MarginLine]:
    """Upsert providers, models and routes; all or nothing (the caller's transaction).

    An enabled route whose cost exceeds its model's price (at the reference token mix) is
    refused unless it says acknowledge_negative_margin; the acknowledgement is audited."""
    allow_private = get_settings().allow_private_upstreams
    providers: dict[str, Provider] = {
        p.name: p for p in session.execute(select(Provider)).scalars()
    }
    for item in spec.providers:
        providers[item.name] = upsert_provider(
            session, item, providers.get(item.name), allow_private
        )
    margins: list[MarginLine] = []
    for model_spec in spec.models:
        margins += _upsert_model(session, model_spec, providers, actor)
    session.flush()
    return margins


def upsert_provider(
    session: Session,
    item: ProviderSpec,
    existing: Provider | None,
    allow_private: bool,
    *,
    keep_headers: bool = False,
) -> Provider:
    """Create or update a provider from a spec; keep_headers leaves the stored extra headers
    alone (the admin form does not edit them), otherwise the spec's replace them."""
    base_url = item.base_url if item.kind not in SANDBOX_KINDS else SANDBOX_BASE_URL
    try:
        base_url = check_base_url(base_url, kind=item.kind, allow_private=allow_private)
    except ValidationFailed as exc:
        raise ValidationFailed(f"provider {item.name}: {exc.message}") from None
    provider = existing or Provider(name=item.name, base_url=base_url)
    provider.kind = item.kind
    if not (keep_headers and existing is not None):  # the admin form does not edit it either
        provider.serves_responses = item.responses and item.kind == "openai"
    provider.base_url = base_url
    provider.timeout_s = item.timeout_s
    if not keep_headers or existing is None:
        provider.extra_headers_json = encrypt_headers(item.headers)
    provider.enabled = item.enabled
    provider.updated_at = utcnow()
    if item.api_key:
        provider.api_key_encrypted = crypto.encrypt(item.api_key, purpose=KEY_PURPOSE)
        provider.api_key_last4 = item.api_key[-4:]
    session.add(provider)
    session.flush()
    return provider


def _upsert_model(
    session: Session, spec: ModelSpec, providers: dict[str, Provider], actor: Actor
) -> list[MarginLine]:
    try:
        price = spec.price.to_price()
    except (ValueError, ValidationFailed) as exc:
        raise ValidationFailed(f"model {spec.name}: {exc}") from None
    model = session.execute(
        select(PublicModel).where(col(PublicModel.name) == spec.name)
    ).scalar_one_or_none() or PublicModel(name=spec.name)
    model.input_price_micros_per_mtok = price.input_micros_per_mtok
    model.output_price_micros_per_mtok = price.output_micros_per_mtok
    model.cached_input_price_micros_per_mtok = price.cached_input_micros_per_mtok
    model.cache_write_price_micros_per_mtok = price.cache_write_micros_per_mtok
    model.request_fee_micros = price.request_fee_micros
    model.max_output_tokens = spec.max_output_tokens
    model.max_media_parts = spec.max_media_parts
    model.media_part_tokens = spec.media_part_tokens
    model.enabled = spec.enabled
    model.fallback_on = ",".join(k for k in FAILURE_KINDS if k in spec.fallback.fall_through)
    model.max_attempts = spec.fallback.max_attempts
    model.attempt_timeout_s = spec.fallback.attempt_timeout_s
    model.cooldown_failures = spec.fallback.cooldown.failures
    model.cooldown_s = spec.fallback.cooldown.seconds
    model.updated_at = utcnow()
    session.add(model)
    session.flush()
    existing = {
        (r.provider_id, r.upstream_model): r
        for r in session.execute(select(Route).where(col(Route.model_id) == model.id)).scalars()
    }
    margins = []
    for route_spec in spec.routes:
        provider = providers.get(route_spec.provider)
        if provider is None or provider.id is None:
            raise ValidationFailed(
                f"model {spec.name}: route names unknown provider {route_spec.provider!r}"
            )
        try:
            cost = route_spec.cost.to_price("cost")
        except (ValueError, ValidationFailed) as exc:
            raise ValidationFailed(
                f"model {spec.name}: route {route_spec.provider}/{route_spec.upstream_model}: {exc}"
            ) from None
        route = existing.get((provider.id, route_spec.upstream_model)) or Route(
            model_id=model.id or 0,
            provider_id=provider.id,
            upstream_model=route_spec.upstream_model,
        )
        route.priority, route.weight, route.enabled = (
            route_spec.priority,
            route_spec.weight,
            route_spec.enabled,
        )
        route.output_cap_param = route_spec.output_cap_param
        route.input_cost_micros_per_mtok = cost.input_micros_per_mtok
        route.output_cost_micros_per_mtok = cost.output_micros_per_mtok
        route.cached_input_cost_micros_per_mtok = cost.cached_input_micros_per_mtok
        route.cache_write_cost_micros_per_mtok = cost.cache_write_micros_per_mtok
        route.request_cost_micros = cost.request_fee_micros
        line = MarginLine(
            model=spec.name,
            provider=provider.name,
            upstream_model=route_spec.upstream_model,
            price_micros=cost_micros(price, REFERENCE_MIX),
            cost_micros=cost_micros(cost, REFERENCE_MIX),
            margin_bps=margin_basis_points(
                cost_micros(price, REFERENCE_MIX), cost_micros(cost, REFERENCE_MIX)
            ),
            loss=losing_mix(price, cost),
        )
        _review_margin(session, route, route_spec, line, actor)
        session.add(route)
        margins.append(line)
    return margins


def _review_margin(
    session: Session, route: Route, spec: RouteSpec, line: MarginLine, actor: Actor
) -> None:
    """Margin review before opening traffic: a loss-making route needs an acknowledgement."""
    loss = line.loss
    if loss is None or not spec.enabled:
        route.negative_margin_acknowledged_at = None
        return
    if not spec.acknowledge_negative_margin:
        raise ValidationFailed(
            f"model {line.model}: route {line.provider}/{line.upstream_model} costs more than "
            f"its price for {loss.mix} (price {format_credits(loss.price_micros)} cost "
            f"{format_credits(loss.cost_micros)}); set acknowledge_negative_margin: true on "
            "the route to enable it anyway"
        )
    if route.negative_margin_acknowledged_at is None:
        route.negative_margin_acknowledged_at = utcnow()
        record(
            session,
            actor=actor,
            action="route.acknowledge_negative_margin",
            target_type="route",
            target_id=f"{line.model}/{line.provider}/{line.upstream_model}",
            after={
                "price": format_credits(line.price_micros),
                "cost": format_credits(line.cost_micros),
                "margin_bps": line.margin_bps,
                "losing_on": loss.mix,
            },
            reason="catalog import",
        )
