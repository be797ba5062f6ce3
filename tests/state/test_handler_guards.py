"""Every event handler of every admin and workspace state, called as a browser could call it.

The handlers are found by walking the state classes, not listed by hand: a new handler without
its guard fails here. Each is called with arguments aimed at another customer's objects (ids
of workspace A), as a signed-out visitor, as a member of workspace B, and (for admin states)
as a non-admin. The guard must refuse (a redirect) and the database must be unchanged for A.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import pkgutil
from datetime import timedelta
from typing import Any

import pytest
import reflex as rx
from reflex.state import State
from sqlalchemy import MetaData, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from creditdash import state as state_package
from creditdash.accounts import roles, sessions
from creditdash.accounts.api_keys import create_api_key
from creditdash.accounts.models import Membership
from creditdash.accounts.users import create_user
from creditdash.billing.invoicing import profiles
from creditdash.billing.payments import orders, packages
from creditdash.catalog.importer import import_catalog, parse_catalog
from creditdash.core import crypto, db, outbox
from creditdash.core.audit import Actor
from creditdash.core.ids import new_id
from creditdash.demo import DEMO_CATALOG
from creditdash.notify import endpoints
from creditdash.notify.models import WebhookDelivery, WebhookEndpoint
from creditdash.state.base import AdminBase, PortalState
from tests.factories import funded_customer
from tests.state.browser import connection

# Handlers that only change what the browser shows: they read and write nothing on the server,
# so they need no guard (each named with what it does).
UI_ONLY = {
    "AutoTopupState.set_accept_consent",  # a checkbox
    "BillingState.set_accept_terms",  # a checkbox
    "BillingState.set_statement_from",  # a date field
    "BillingState.set_statement_to",
    "KeysState.forget_new_key",  # clears the shown new key
    # Each closes a confirmation and forgets what it would have done (nothing is written).
    "AdminOrdersState.cancel_confirm",
    "AdminState.cancel_confirm",
    "KeysState.cancel_confirm",
    "TeamState.cancel_confirm",
    "UsageState.hide",  # closes the request dialog
    "WebhooksState.forget_secret",  # clears the shown signing secret
}
# The session's own handlers, inherited by every state: signing out needs no guard, and picking
# a workspace is itself checked against the memberships (tests/state/portal/test_portal_tenancy.py).
INHERITED = {"sign_out", "pick_workspace", "redirect_if_signed_in"}


# Every state module, so that the walk sees every state class there is.
for _module in pkgutil.walk_packages(state_package.__path__, state_package.__name__ + "."):
    importlib.import_module(_module.name)


def _subclasses(base: type) -> list[type]:
    found: list[type] = []
    for cls in base.__subclasses__():
        found += [cls, *_subclasses(cls)]
    return found


def _handlers(base: type) -> list[tuple[type, str]]:
    pairs = []
    for cls in _subclasses(base):
        for name, handler in cls.event_handlers.items():
            if name in INHERITED or name == "setvar" or name not in vars(cls):
                continue  # Reflex's own setter, and handlers of the base classes
            if f"{cls.__name__}.{name}" in UI_ONLY:
                continue
            if not isinstance(handler, rx.event.EventHandler):
                continue
            pairs.append((cls, name))
    return sorted(pairs, key=lambda p: (p[0].__name__, p[1]))


ADMIN_HANDLERS = _handlers(AdminBase)
PORTAL_HANDLERS = _handlers(PortalState)


def _state(cls: type, token: str, world: dict[str, Any], workspace_id: str = "") -> Any:
    root = State(_reflex_internal_init=True)  # type: ignore[call-arg]
    sub = root.get_substate(cls.get_full_name().split(".")[1:])
    sub.router = connection(token)
    if workspace_id and isinstance(sub, PortalState):
        sub.workspace_id = workspace_id  # forged: the browser claims workspace A
    if hasattr(sub, "pending_order"):
        sub.pending_order = world["a_order"]  # forged: A's order, to poll for
    return sub


def _attack_args(cls: type, name: str, world: dict[str, Any]) -> list[object]:
    """Arguments that name A's objects wherever a handler takes an id."""
    fn = cls.event_handlers[name].fn
    form = {
        "customer_id": world["a_customer"],
        "order_id": world["a_order"],
        "key_id": world["a_key"],
        "amount": "1000",
        "credits": "1000",
        "direction": "grant",
        "reason": "guard test",
        "reference": "FORGED",
        "refund_id": "guard-test",
        "key": "guard-test",
        "email": "intruder@example.com",
        "role": "owner",
        "name": "intruder",
    }
    args: list[object] = []
    for param in list(inspect.signature(fn).parameters.values())[1:]:
        if param.default is not inspect.Parameter.empty:
            break
        annotation = str(param.annotation)
        if "dict" in annotation:
            args.append(dict(form))
        elif "int" in annotation:
            args.append(1)
        elif "bool" in annotation:
            args.append(True)
        else:
            args.append(world["by_param"].get(param.name, world["a_customer"]))
    return args


def _call(cls: type, name: str, token: str, world: dict[str, Any], workspace: str = "") -> Any:
    state = _state(cls, token, world, workspace)
    return asyncio.run(cls.event_handlers[name].fn(state, *_attack_args(cls, name, world)))


def _fingerprint(engine: Engine, customer_id: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row that belongs to the customer (by customer_id, or by its ledger accounts), and
    every row of the tables without an owner column (catalog, audit, transfers)."""
    metadata = MetaData()
    metadata.reflect(engine)
    seen: dict[str, list[tuple[object, ...]]] = {}
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            query = select(table)
            if "customer_id" in table.columns:
                query = query.where(table.c.customer_id == customer_id)
            elif table.name == "web_sessions":
                continue  # starting sessions for the test's own callers
            elif table.name == "audit_log":
                # What was done to another workspace (B acting on B) is not A's.
                query = query.where(
                    (table.c.target_type != "customer") | (table.c.target_id == customer_id)
                )
            rows = connection.execute(query).all()
            seen[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return seen


def _token(user_id: int) -> str:
    with db.session_scope() as session:
        return sessions.start_session(session, user_id=user_id, ttl=timedelta(hours=1))


def _webhook_of(session: Session, customer_id: str) -> tuple[str, str]:
    """An endpoint of A with one delivery, written directly (no URL to resolve)."""
    endpoint = WebhookEndpoint(
        id=new_id("whe"),
        customer_id=customer_id,
        url="https://hooks.example.com/a",
        secret=crypto.encrypt(endpoints.new_secret(), purpose=endpoints.CIPHER_PURPOSE),
        event_types_json=json.dumps(["key.created"]),
    )
    session.add(endpoint)
    session.flush()
    event_id = outbox.emit(session, type="key.created", customer_id=customer_id, data={})
    assert event_id is not None
    message = WebhookDelivery(
        id=new_id("msg"), endpoint_id=endpoint.id, event_id=event_id, status="failed"
    )
    session.add(message)
    session.flush()
    return endpoint.id, message.id


@pytest.fixture
def world(sqlite_engine: Engine) -> dict[str, Any]:
    a = funded_customer(sqlite_engine, credits_micros=5_000_000, name="Alpha")
    b = funded_customer(sqlite_engine, credits_micros=5_000_000, name="Beta")
    with db.session_scope() as session:
        packages.seed_demo_packages(session, actor=Actor(label="test"))
        profiles.seed_demo_seller(session, actor=Actor(label="test"))
        import_catalog(session, parse_catalog(DEMO_CATALOG))
        a_key, _raw = create_api_key(session, customer_id=a.customer_id, name="alpha key")
        order = orders.create_order(
            session,
            customer_id=a.customer_id,
            package=packages.find_package(session, "Starter"),
            actor=Actor(label="test"),
        )
        b_member = session.execute(
            select(Membership.user_id).where(Membership.customer_id == b.customer_id)
        ).scalar_one()
        a_key_id, order_id = a_key.id, order.id
        a_endpoint, a_delivery = _webhook_of(session, a.customer_id)
    return {
        "engine": sqlite_engine,
        "a_customer": a.customer_id,
        "a_key": a_key_id,
        "a_order": order_id,
        "b_token": _token(b_member),
        "by_param": {
            "key_id": a_key_id,
            "customer_id": a.customer_id,
            "request_id": "req_x",
            "endpoint_id": a_endpoint,
            "delivery_id": a_delivery,
        },
    }


def _is_redirect(result: object, to: str) -> bool:
    """Whether a handler answered with rx.redirect(to)."""
    shown = str(result)
    return "redirect" in shown and (f'"{to}"' in shown or f"'{to}'" in shown)


def test_the_walk_finds_the_handlers() -> None:
    names = {f"{c.__name__}.{n}" for c, n in ADMIN_HANDLERS}
    assert {"AdminOrdersState.approve", "AdminState.adjust", "AdminModelsState.save_price"} <= names
    assert len(ADMIN_HANDLERS) >= 25
    portal = {f"{c.__name__}.{n}" for c, n in PORTAL_HANDLERS}
    assert {"KeysState.revoke", "BillingState.pay", "TeamState.invite"} <= portal
    assert {"WebhooksState.add", "WebhooksState.resend", "WebhooksState.delete"} <= portal
    # Every workspace handler declares the permission the guard checks.
    assert all(_permission(c, n) in roles.PERMISSIONS for c, n in PORTAL_HANDLERS)


def _permission(cls: type, name: str) -> str:
    """The permission the handler's @workspace_event checks; handlers that call a guarded one
    (BillingState.pay calls _start) have none of their own and are left to that one."""
    fn = cls.event_handlers[name].fn
    return str(getattr(fn, "__permission__", "workspace.read"))


# Each guarded handler with a permission beyond membership, with each role that lacks it.
REFUSED = [
    (cls, name, role)
    for cls, name in PORTAL_HANDLERS
    if _permission(cls, name) != "workspace.read"
    for role in roles.ROLES
    if not roles.allows(role, _permission(cls, name))
]


@pytest.mark.parametrize(("cls", "name", "role"), REFUSED, ids=lambda v: getattr(v, "__name__", v))
def test_every_handler_refuses_roles_without_its_permission(
    world: dict[str, Any], cls: type, name: str, role: str
) -> None:
    engine = world["engine"]
    with db.session_scope() as session:
        user = create_user(session, email=f"{role}@alpha.example.com", password="a-long-password-1")
        assert user.id is not None
        session.add(Membership(customer_id=world["a_customer"], user_id=user.id, role=role))
        user_id = user.id
    token = _token(user_id)
    before = _fingerprint(engine, world["a_customer"])
    state = _state(cls, token, world, world["a_customer"])
    asyncio.run(cls.event_handlers[name].fn(state, *_attack_args(cls, name, world)))
    assert state.role_refusal, f"{cls.__name__}.{name} served a {role}"
    assert _fingerprint(engine, world["a_customer"]) == before


@pytest.mark.parametrize(("cls", "name"), ADMIN_HANDLERS, ids=lambda v: getattr(v, "__name__", v))
def test_every_admin_handler_refuses_visitors_and_customers(
    world: dict[str, Any], cls: type, name: str
) -> None:
    engine = world["engine"]
    before = _fingerprint(engine, world["a_customer"])
    signed_out = _call(cls, name, "", world)
    assert _is_redirect(signed_out, "/signin"), f"{cls.__name__}.{name} served a visitor"
    customer = _call(cls, name, world["b_token"], world)
    assert _is_redirect(customer, "/home"), f"{cls.__name__}.{name} served a non-admin"
    assert _fingerprint(engine, world["a_customer"]) == before


@pytest.mark.parametrize(("cls", "name"), PORTAL_HANDLERS, ids=lambda v: getattr(v, "__name__", v))
def test_every_workspace_handler_refuses_visitors_and_other_workspaces(
    world: dict[str, Any], cls: type, name: str
) -> None:
    engine = world["engine"]
    before = _fingerprint(engine, world["a_customer"])
    signed_out = _call(cls, name, "", world)
    assert _is_redirect(signed_out, "/signin"), f"{cls.__name__}.{name} served a visitor"
    # A member of workspace B who claims workspace A acts, at most, on B.
    _call(cls, name, world["b_token"], world, workspace=world["a_customer"])
    assert _fingerprint(engine, world["a_customer"]) == before
