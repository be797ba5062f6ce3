"""The Reflex app: dashboard pages, with the gateway mounted on the same backend (one port)."""

from __future__ import annotations

import asyncio
from typing import Any

import reflex as rx
from starlette.applications import Starlette

from creditdash import jobs
from creditdash.pages.admin.audit import admin_audit_page
from creditdash.pages.admin.customers import admin_page
from creditdash.pages.admin.mail import admin_mail_page
from creditdash.pages.admin.orders import admin_orders_page
from creditdash.pages.admin.payments import admin_payments_page
from creditdash.pages.admin.prices import admin_models_page
from creditdash.pages.admin.providers import admin_providers_page
from creditdash.pages.admin.requests import admin_requests_page
from creditdash.pages.admin.sales import admin_sales_page
from creditdash.pages.admin.upstream import admin_upstream_page
from creditdash.pages.portal.account import account_page, first_password_page
from creditdash.pages.portal.autotopup import autotopup_page
from creditdash.pages.portal.billing import billing_page
from creditdash.pages.portal.invite import invite_page
from creditdash.pages.portal.keys import keys_page
from creditdash.pages.portal.landing import landing_page
from creditdash.pages.portal.overview import home_page
from creditdash.pages.portal.pricing import pricing_page
from creditdash.pages.portal.reset import forgot_password_page, reset_password_page
from creditdash.pages.portal.signin import signin_page
from creditdash.pages.portal.signup import signup_page
from creditdash.pages.portal.team import team_page
from creditdash.pages.portal.usage import usage_page
from creditdash.pages.portal.webhooks import webhooks_page
from creditdash.proxy.app import check_mounted_startup
from creditdash.routes import (
    AUTOTOPUP_PATH,
    CHANGE_PASSWORD_PATH,
    FORGOT_PASSWORD_PATH,
    RESET_PASSWORD_PATH,
    SIGN_IN_PATH,
    SIGN_UP_PATH,
    WEBHOOKS_PATH,
)
from creditdash.server import create_app as create_gateway
from creditdash.state.admin.audit import AdminAuditState
from creditdash.state.admin.customers import AdminState
from creditdash.state.admin.mail import AdminMailState
from creditdash.state.admin.orders import AdminOrdersState
from creditdash.state.admin.payments import AdminPaymentsState
from creditdash.state.admin.prices import AdminModelsState
from creditdash.state.admin.providers import AdminProvidersState
from creditdash.state.admin.requests import AdminRequestsState
from creditdash.state.admin.sales import AdminSalesState
from creditdash.state.admin.upstream import AdminUpstreamState
from creditdash.state.portal.account import AccountState, FirstPasswordState
from creditdash.state.portal.autotopup import AutoTopupState
from creditdash.state.portal.billing import BillingState
from creditdash.state.portal.invite import InviteState
from creditdash.state.portal.keys import KeysState
from creditdash.state.portal.overview import OverviewState
from creditdash.state.portal.pricing import PricingState
from creditdash.state.portal.signin import SignInState
from creditdash.state.portal.signup import SignUpState
from creditdash.state.portal.team import TeamState
from creditdash.state.portal.usage import UsageState
from creditdash.state.portal.webhooks import WebhooksState
from creditdash.web.auth import session_cookie_routes

_mounted: list[Starlette] = []


def mount_gateway(reflex_asgi: Any) -> Starlette:
    """A fresh gateway app per call, with the Reflex app mounted under it.

    A callable (not a Starlette instance) because Reflex may build the ASGI app more than once,
    and a started app cannot take middleware again.
    """
    gateway = create_gateway(standalone=False)
    gateway.routes.extend(session_cookie_routes())
    gateway.mount("", reflex_asgi)
    _mounted.append(gateway)
    return gateway


async def close_gateway_clients() -> None:
    """A mounted app gets no lifespan of its own: close its upstream client on shutdown."""
    try:
        await asyncio.Event().wait()
    finally:
        for mounted in _mounted:
            await mounted.state.gateway.aclose()


app = rx.App(api_transformer=mount_gateway)
app.register_lifespan_task(check_mounted_startup)
app.register_lifespan_task(jobs.run_forever)
app.register_lifespan_task(close_gateway_clients)
app.add_page(
    landing_page,
    route="/",
    title="creditdash · prepaid credits for AI models",
    on_load=[SignInState.redirect_if_signed_in, PricingState.load],
)
app.add_page(
    signin_page,
    route=SIGN_IN_PATH,
    title="Sign in · creditdash",
    on_load=SignInState.redirect_if_signed_in,
)
app.add_page(home_page, route="/home", title="Overview · creditdash", on_load=OverviewState.load)
app.add_page(keys_page, route="/keys", title="API keys · creditdash", on_load=KeysState.load)
app.add_page(
    webhooks_page,
    route=WEBHOOKS_PATH,
    title="Webhooks · creditdash",
    on_load=WebhooksState.load,
)
app.add_page(usage_page, route="/usage", title="Usage · creditdash", on_load=UsageState.load)
app.add_page(
    billing_page, route="/billing", title="Billing · creditdash", on_load=BillingState.load
)
app.add_page(
    autotopup_page,
    route=AUTOTOPUP_PATH,
    title="Automatic top-ups · creditdash",
    on_load=AutoTopupState.load,
)
app.add_page(
    account_page, route="/account", title="Account · creditdash", on_load=AccountState.load
)
app.add_page(
    first_password_page,
    route=CHANGE_PASSWORD_PATH,
    title="Choose your password · creditdash",
    on_load=FirstPasswordState.load,
)
app.add_page(
    signup_page, route=SIGN_UP_PATH, title="Sign up · creditdash", on_load=SignUpState.load
)
app.add_page(team_page, route="/team", title="Team · creditdash", on_load=TeamState.load)
app.add_page(
    invite_page, route="/invite", title="Invitation · creditdash", on_load=InviteState.load
)
app.add_page(
    forgot_password_page, route=FORGOT_PASSWORD_PATH, title="Forgot your password · creditdash"
)
app.add_page(
    reset_password_page, route=RESET_PASSWORD_PATH, title="Choose a new password · creditdash"
)
app.add_page(
    pricing_page, route="/pricing", title="Pricing · creditdash", on_load=PricingState.load
)
app.add_page(admin_page, route="/admin", title="Admin · creditdash", on_load=AdminState.load)
app.add_page(
    admin_orders_page,
    route="/admin/orders",
    title="Orders · admin · creditdash",
    on_load=AdminOrdersState.load,
)
app.add_page(
    admin_models_page,
    route="/admin/models",
    title="Prices · admin · creditdash",
    on_load=AdminModelsState.load,
)
app.add_page(
    admin_providers_page,
    route="/admin/providers",
    title="Providers · admin · creditdash",
    on_load=AdminProvidersState.load,
)
app.add_page(
    admin_requests_page,
    route="/admin/requests",
    title="Requests · admin · creditdash",
    on_load=AdminRequestsState.load,
)
app.add_page(
    admin_payments_page,
    route="/admin/payments",
    title="Payments · admin · creditdash",
    on_load=AdminPaymentsState.load,
)
app.add_page(
    admin_upstream_page,
    route="/admin/upstream",
    title="Upstream costs · admin · creditdash",
    on_load=AdminUpstreamState.load,
)
app.add_page(
    admin_sales_page,
    route="/admin/sales",
    title="Packages and invoices · admin · creditdash",
    on_load=AdminSalesState.load,
)
app.add_page(
    admin_audit_page,
    route="/admin/audit",
    title="Audit · admin · creditdash",
    on_load=AdminAuditState.load,
)
app.add_page(
    admin_mail_page,
    route="/admin/mail",
    title="Mail · admin · creditdash",
    on_load=AdminMailState.load,
)
