"""`creditdash keys`: the API keys customers call the gateway with."""

from __future__ import annotations

import click
from sqlmodel import Session

from creditdash.accounts import api_keys
from creditdash.cli.common import emit, in_transaction
from creditdash.core.money import parse_credits


@click.group("keys")
def group() -> None:
    """Customer API keys for the gateway."""


@group.command("create")
@click.option("--customer", "customer_id", required=True)
@click.option("--name", default="default", show_default=True)
@click.option("--rpm", type=int, default=None, help="Requests per minute")
@click.option("--concurrency", type=int, default=None, help="Requests in flight at once")
@click.option("--monthly-cap", default=None, help="Credits this key may spend per month")
@click.option("--models", default=None, help="Comma-separated public model names allowed")
@click.option("--json", "as_json", is_flag=True)
def keys_create(
    customer_id: str,
    name: str,
    rpm: int | None,
    concurrency: int | None,
    monthly_cap: str | None,
    models: str | None,
    as_json: bool,
) -> None:
    """Create a key (optionally limited); it is printed once and cannot be shown again."""

    def work(session: Session) -> tuple[str, str]:
        limits = api_keys.KeyLimits(
            rpm=rpm,
            concurrency=concurrency,
            monthly_spend_cap_micros=(
                parse_credits(monthly_cap, field="--monthly-cap")
                if monthly_cap is not None
                else None
            ),
            allowed_models=tuple(models.split(",")) if models is not None else None,
        )
        key, raw = api_keys.create_api_key(
            session, customer_id=customer_id, name=name, limits=limits
        )
        return key.id, raw

    key_id, raw = in_transaction(work)
    emit({"key_id": key_id, "api_key": raw}, as_json, f"key_id: {key_id}\napi_key: {raw}")


@group.command("revoke")
@click.option("--customer", "customer_id", required=True)
@click.argument("key_id")
def keys_revoke(customer_id: str, key_id: str) -> None:
    """Revoke a key."""
    in_transaction(lambda s: api_keys.revoke_api_key(s, customer_id=customer_id, key_id=key_id))
    click.echo(f"revoked {key_id}")
