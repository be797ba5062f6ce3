"""Tables for people and workspaces: users, customers, memberships, API keys, sessions, audit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlmodel import Field, SQLModel

from creditdash.core.timeutil import utcnow

CUSTOMER_STATUSES = ("active", "suspended")
# A member's role; what each may do is accounts/roles.py's table.
MEMBER_ROLES = ("owner", "admin", "developer", "billing", "viewer")
_ROLE_CHECK = "role IN (" + ", ".join(f"'{r}'" for r in MEMBER_ROLES) + ")"


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    # Stored lower-cased, so uniqueness holds regardless of case.
    email: str = Field(max_length=320, unique=True)
    display_name: str = Field(default="", max_length=200)
    # None: the user cannot sign in until a password is set.
    password_hash: str | None = Field(default=None, max_length=255)
    is_platform_admin: bool = Field(default=False)
    is_active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow)
    password_changed_at: datetime | None = None
    # A one-time password (an invitation's): it signs in only to choose a new password, and
    # not at all after password_expires_at.
    must_change_password: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    password_expires_at: datetime | None = None


class Customer(SQLModel, table=True):
    """A workspace: the unit that owns a balance, keys, orders and invoices."""

    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'suspended')", name="ck_customers_status"),
    )

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    email: str = Field(max_length=320, unique=True)
    status: str = Field(default="active", max_length=16)
    # JSON list of public model names the workspace may call; None allows every model.
    allowed_models_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class Membership(SQLModel, table=True):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("customer_id", "user_id", name="uq_memberships_customer_user"),
        CheckConstraint(_ROLE_CHECK, name="ck_memberships_role"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", index=True, max_length=40)
    user_id: int = Field(foreign_key="users.id", index=True)
    role: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow)


_OPEN_INVITE = text("accepted_at IS NULL AND revoked_at IS NULL")


class Invite(SQLModel, table=True):
    """An invitation of one email address into a workspace with a role. The link's token is
    random and single-use; only its SHA-256 is stored. Open: neither accepted nor revoked."""

    __tablename__ = "invites"
    __table_args__ = (
        CheckConstraint(_ROLE_CHECK, name="ck_invites_role"),
        # At most one open invite per address and workspace (a partial index on both databases).
        Index(
            "uq_invites_open",
            "customer_id",
            "email",
            unique=True,
            sqlite_where=_OPEN_INVITE,
            postgresql_where=_OPEN_INVITE,
        ),
    )

    id: str = Field(primary_key=True, max_length=40)
    customer_id: str = Field(foreign_key="customers.id", index=True, max_length=40)
    # Normalized (lower-case), as users.email is.
    email: str = Field(max_length=320)
    role: str = Field(max_length=16)
    token_hash: str = Field(max_length=64, unique=True)
    invited_by_user_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    accepted_at: datetime | None = None
    accepted_by_user_id: int | None = Field(default=None, foreign_key="users.id")
    revoked_at: datetime | None = None


class ApiKey(SQLModel, table=True):
    """A customer's key for the gateway. Only its SHA-256 is stored; the key is shown once."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=40)
    customer_id: str = Field(foreign_key="customers.id", index=True, max_length=40)
    name: str = Field(max_length=100)
    key_hash: str = Field(max_length=64, unique=True)
    display_prefix: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    created_by_user_id: int | None = Field(default=None, foreign_key="users.id")
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    # Optional limits; None means unlimited.
    rpm_limit: int | None = None
    concurrency_limit: int | None = None
    monthly_spend_cap_micros: int | None = Field(
        default=None, sa_column=Column(BigInteger, nullable=True)
    )
    # JSON list of public model names this key may call; None allows every model.
    allowed_models_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class WebSession(SQLModel, table=True):
    """A dashboard sign-in. The browser holds a random token; only its SHA-256 is stored."""

    __tablename__ = "web_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None


class SessionHandoff(SQLModel, table=True):
    """A single-use code, valid for a minute, that a browser trades for its session cookie.

    Sign-in runs over the dashboard's websocket, which cannot set an HttpOnly cookie; the page
    navigates to /auth/session with this code and that response sets it (the session's token
    is replaced then, so the one the websocket handler saw is never a cookie)."""

    __tablename__ = "session_handoffs"

    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(max_length=64, unique=True)
    web_session_id: int = Field(foreign_key="web_sessions.id", index=True)
    expires_at: datetime
    used_at: datetime | None = None


class PasswordReset(SQLModel, table=True):
    """A password-reset link sent by email. Only the token's SHA-256 is stored; the link works
    once (used_at) and not after expires_at."""

    __tablename__ = "password_resets"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
