"""What a browser's connection brings to a state in these tests: its cookie and address."""

from __future__ import annotations

from typing import Any

from reflex.istate.data import RouterData
from reflex.state import State

from creditdash.accounts.sessions import SESSION_COOKIE


def connection(token: str = "", address: str = "") -> RouterData:
    """The router data of a websocket whose handshake sent this session cookie."""
    headers = {"cookie": f"theme=dark; {SESSION_COOKIE}={token}"} if token else {}
    return RouterData.from_router_data({"headers": headers, "ip": address})


def state(cls: type, token: str = "", address: str = "") -> Any:
    root = State(_reflex_internal_init=True)  # type: ignore[call-arg]
    sub = root.get_substate(cls.get_full_name().split(".")[1:])
    sub.router = connection(token, address)
    return sub
