"""`creditdash customers`: workspaces, their balances, grants, model access and billing profile."""

from __future__ import annotations

import click
from sqlmodel import Session

from creditdash.accounts import api_keys, customers
from creditdash.billing import adjustments, balances, onboarding
from creditdash.billing.invoicing import profiles
from creditdash.cli.common import emit, in_transaction
from creditdash.core.audit import CLI
from creditdash.core.ids import new_id
from creditdash.core.money import parse_credits


@click.group("customers")
def group() -> None:
    """Customers (workspaces) and their balances."""


@group.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--credits", "credits_text", default=None, help="Opening credit, e.g. 25.50")
@click.option("--json", "as_json", is_flag=True)
def customers_create(email: str, name: str, credits_text: str | None, as_json: bool) -> None:
    """Create a customer with an owner user and a fresh API key."""

    def work(session: Session) -> tuple[str, str]:
        opening = parse_credits(credits_text, field="--credits") if credits_text is not None else 0
        customer = onboarding.create_customer(
            session, name=name, email=email, actor=CLI, opening_credits_micros=opening
        )
        _key, raw_key = api_keys.create_api_key(session, customer_id=customer.id, name="default")
        return customer.id, raw_key

    customer_id, raw_key = in_transaction(work)
    emit(
        {"customer_id": customer_id, "api_key": raw_key},
        as_json,
        f"customer_id: {customer_id}\napi_key: {raw_key}  (shown once; store it now)",
    )


@group.command("balance")
@click.argument("customer_id")
@click.option("--json", "as_json", is_flag=True)
def customers_balance(customer_id: str, as_json: bool) -> None:
    """Balance, held and available credits."""
    balance = in_transaction(
        lambda s: balances.customer_balance(s, customer_id), readonly=True
    ).as_json()
    emit(balance, as_json, "\n".join(f"{k}: {v}" for k, v in balance.items()))


@group.command("grant")
@click.argument("customer_id")
@click.option("--credits", "credits_text", required=True)
@click.option("--reason", required=True)
@click.option("--idempotency-key", default=None, help="Repeat-safe key (default: a new one)")
def customers_grant(
    customer_id: str, credits_text: str, reason: str, idempotency_key: str | None
) -> None:
    """Grant credits to a customer (audited)."""

    def work(session: Session) -> None:
        adjustments.grant_credits(
            session,
            customer_id=customer_id,
            amount_micros=parse_credits(credits_text, field="--credits"),
            reason=reason,
            actor=CLI,
            idempotency_key=idempotency_key or new_id("grant"),
        )

    in_transaction(work)
    click.echo("granted")


@group.command("models")
@click.argument("customer_id")
@click.option("--allow", default=None, help="Comma-separated public model names")
@click.option("--all", "allow_all", is_flag=True, help="Lift the restriction")
def customers_models(customer_id: str, allow: str | None, allow_all: bool) -> None:
    """Restrict which public models a workspace may call (audited)."""
    if (allow is None) == (not allow_all):
        raise click.UsageError("give either --allow a,b or --all")
    models = None if allow_all else (allow or "").split(",")
    in_transaction(
        lambda s: customers.set_allowed_models(s, customer_id=customer_id, models=models, actor=CLI)
    )
    click.echo("workspace may call " + ("every model" if models is None else ", ".join(models)))


@group.command("profile")
@click.argument("customer_id")
@click.option("--legal-name", required=True)
@click.option("--country", required=True, help="ISO 3166 two-letter code, e.g. DE")
@click.option("--business", is_flag=True, help="A business buyer (not a consumer).")
@click.option("--tax-id", default="", help="VAT ID / ABN / BN ...; format-checked.")
@click.option("--address", default="", help="Street and number.")
@click.option("--address2", default="")
@click.option("--city", default="")
@click.option("--postal-code", default="")
@click.option("--region", default="", help="State or province, e.g. ON (needed in Canada).")
@click.option("--email", "billing_email", default="")
@click.option("--json", "as_json", is_flag=True)
def customers_profile(
    customer_id: str,
    legal_name: str,
    country: str,
    business: bool,
    tax_id: str,
    address: str,
    address2: str,
    city: str,
    postal_code: str,
    region: str,
    billing_email: str,
    as_json: bool,
) -> None:
    """Set the billing profile (issued invoices keep the details they were issued with)."""
    data = profiles.ProfileInput(
        legal_name=legal_name,
        country=country,
        is_business=business,
        tax_id=tax_id,
        address_line1=address,
        address_line2=address2,
        city=city,
        postal_code=postal_code,
        region=region,
        billing_email=billing_email,
    )
    payload = in_transaction(
        lambda s: profiles.describe_profile(
            profiles.save_billing_profile(s, customer_id=customer_id, data=data, actor=CLI)
        )
    )
    emit(payload, as_json, "\n".join(f"{k}: {v}" for k, v in payload.items()))
