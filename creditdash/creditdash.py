"""The Reflex app: dashboard pages, with the gateway mounted on the same backend (one port)."""

from __future__ import annotations

import asyncio
from typing import Any

import reflex as rx
from starlette.applications import Starlette

from creditdash.billing.holds import expire_holds_forever
from creditdash.pages.admin import admin_page
from creditdash.pages.home import home_page
from creditdash.pages.signin import signin_page
from creditdash.proxy.app import create_app as create_gateway
from creditdash.state.admin import AdminState
from creditdash.state.home import HomeState
from creditdash.state.signin import SignInState

_mounted: list[Starlette] = []


def mount_gateway(reflex_asgi: Any) -> Starlette:
    """A fresh gateway app per call, with the Reflex app mounted under it.

    A callable (not a Starlette instance) because Reflex may build the ASGI app more than once,
    and a started app cannot take middleware again.
    """
    gateway = create_gateway(standalone=False)
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
app.register_lifespan_task(expire_holds_forever)
app.register_lifespan_task(close_gateway_clients)
app.add_page(
    signin_page, route="/", title="Sign in · creditdash", on_load=SignInState.redirect_if_signed_in
)
app.add_page(home_page, route="/home", title="Home · creditdash", on_load=HomeState.load)
app.add_page(admin_page, route="/admin", title="Admin · creditdash", on_load=AdminState.load)
