"""Customer API keys for the gateway. Shown once at creation; only the SHA-256 is stored.

Keys carry 256 random bits, so a plain SHA-256 (not a slow password hash) is safe to store
and lets the gateway find a key with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlmodel import Session, col

from creditdash.accounts import roles
from creditdash.accounts.models import ApiKey, Customer
from creditdash.core import outbox
from creditdash.core.db import rowcount
from creditdash.core.errors import NotFound, ValidationFailed
from creditdash.core.ids import new_id
from creditdash.core.money import MAX_MICROS
from creditdash.core.timeutil import utcnow

KEY_PREFIX = "sk-cd-"
DISPLAY_CHARS = 10
MAX_KEY_CHARS = 200


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyLimits:
    """Optional per-key limits; None means unlimited."""

    rpm: int | None = None
    concurrency: int | None = None
    monthly_spend_cap_micros: int | None = None
    allowed_models: tuple[str, ...] | None = None

    def validate(self) -> None:
        for label, value, ceiling in (
            ("requests per minute", self.rpm, 1_000_000),
            ("concurrent requests", self.concurrency, 10_000),
            ("monthly spend cap", self.monthly_spend_cap_micros, MAX_MICROS),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= ceiling
            ):
                raise ValidationFailed(f"{label} must be a positive whole number")
        if self.allowed_models is not None:
            names = [m.strip() for m in self.allowed_models]
            if not names or any(not n or len(n) > 120 for n in names):
                raise ValidationFailed("allowed models must be 1-120 character model names")


def create_api_key(
    session: Session,
    *,
    customer_id: str,
    name: str,
    created_by_user_id: int | None = None,
    limits: KeyLimits | None = None,
) -> tuple[ApiKey, str]:
    """A new key for the customer; returns the row and the raw key (never retrievable again).
    A key made by a user (created_by_user_id) needs keys.manage in the workspace; the operator's
    (no user) does not."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationFailed("key name must be 1-100 characters")
    limits = limits or KeyLimits()
    limits.validate()
    if session.get(Customer, customer_id) is None:
        raise NotFound("customer not found")
    if created_by_user_id is not None:
        roles.require(
            session, user_id=created_by_user_id, customer_id=customer_id, permission="keys.manage"
        )
    raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"),
        customer_id=customer_id,
        name=name,
        key_hash=hash_key(raw_key),
        display_prefix=raw_key[: len(KEY_PREFIX) + DISPLAY_CHARS],
        created_by_user_id=created_by_user_id,
        rpm_limit=limits.rpm,
        concurrency_limit=limits.concurrency,
        monthly_spend_cap_micros=limits.monthly_spend_cap_micros,
        allowed_models_json=(
            json.dumps(sorted({m.strip() for m in limits.allowed_models}))
            if limits.allowed_models is not None
            else None
        ),
    )
    session.add(key)
    session.flush()
    outbox.emit(
        session,
        type="key.created",
        customer_id=customer_id,
        data={"key_id": key.id, "name": key.name, "prefix": key.display_prefix},
    )
    return key, raw_key


def revoke_api_key(session: Session, *, customer_id: str, key_id: str) -> None:
    """Revoke one of this customer's keys; another customer's key is simply not found."""
    result = session.execute(
        update(ApiKey)
        .where(col(ApiKey.id) == key_id, col(ApiKey.customer_id) == customer_id)
        .values(revoked_at=utcnow())
        .where(col(ApiKey.revoked_at).is_(None))
    )
    if rowcount(result) == 1:
        name = session.execute(select(col(ApiKey.name)).where(col(ApiKey.id) == key_id)).scalar()
        outbox.emit(
            session,
            type="key.revoked",
            customer_id=customer_id,
            data={"key_id": key_id, "name": name},
            dedupe_key=f"key.revoked:{key_id}",
        )
        return
    exists = session.execute(
        select(col(ApiKey.id)).where(
            col(ApiKey.id) == key_id, col(ApiKey.customer_id) == customer_id
        )
    ).first()
    if exists is None:
        raise NotFound("API key not found")


def find_active_key(session: Session, raw_key: str) -> ApiKey | None:
    """The active key for a raw key of an active customer, or None."""
    if not raw_key or len(raw_key) > MAX_KEY_CHARS:
        return None
    return session.execute(
        select(ApiKey)
        .join(Customer, col(Customer.id) == col(ApiKey.customer_id))
        .where(
            col(ApiKey.key_hash) == hash_key(raw_key),
            col(ApiKey.revoked_at).is_(None),
            col(Customer.status) == "active",
        )
    ).scalar_one_or_none()


def find_unrevoked_key(session: Session, raw_key: str) -> tuple[ApiKey, str] | None:
    """The unrevoked key for a raw key and its workspace's status (active or suspended)."""
    if not raw_key or len(raw_key) > MAX_KEY_CHARS:
        return None
    row = session.execute(
        select(ApiKey, col(Customer.status))
        .join(Customer, col(Customer.id) == col(ApiKey.customer_id))
        .where(col(ApiKey.key_hash) == hash_key(raw_key), col(ApiKey.revoked_at).is_(None))
    ).first()
    return None if row is None else (row[0], str(row[1]))


def list_keys(session: Session, *, customer_id: str) -> list[ApiKey]:
    """The customer's keys, newest first (revoked ones too, marked by revoked_at)."""
    return list(
        session.execute(
            select(ApiKey)
            .where(col(ApiKey.customer_id) == customer_id)
            .order_by(col(ApiKey.created_at).desc())
        ).scalars()
    )
