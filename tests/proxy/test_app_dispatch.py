"""The proxied POSTs skip Starlette's middleware layers (GatewayApp); whatever the endpoint does,
the answer and what reaches the server must be the same as through Starlette itself."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from creditdash.proxy import errors
from creditdash.proxy.app import PROXIED_PATHS, GatewayApp
from creditdash.server import create_app


def _outcome(app: GatewayApp, method: str, path: str) -> tuple[int, bytes, dict[str, str], str]:
    """(status, body, headers, what the server saw raised) for one request."""
    import asyncio

    async def main() -> tuple[int, bytes, dict[str, str], str]:
        raised = ""
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            response = await client.request(method, path, json={"model": "m"})
        strict = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=strict, base_url="http://gateway") as client:
            try:
                await client.request(method, path, json={"model": "m"})
            except Exception as exc:
                raised = type(exc).__name__
        headers = {k: v for k, v in response.headers.items() if k != "content-length"}
        # Every answer has a request id (a fresh one for these): its presence is compared.
        headers["x-request-id"] = (
            "req_" if headers.get("x-request-id", "").startswith("req_") else ""
        )
        return response.status_code, response.content, headers, raised

    return asyncio.run(main())


BEHAVIOURS: dict[str, Any] = {
    "answers": lambda: Response(b'{"ok":1}', media_type="application/json"),
    "gateway error": errors.insufficient_credits,
    "http exception": lambda: HTTPException(418, "teapot"),
    "bug": lambda: RuntimeError("a bug"),
}


@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
def test_fast_dispatch_answers_like_starlette(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch, behaviour: str
) -> None:
    app = create_app(standalone=False)
    assert isinstance(app, GatewayApp)
    assert set(app.fast_routes) == set(PROXIED_PATHS)

    async def handle(_request: Request, _endpoint: str) -> Response:
        made = BEHAVIOURS[behaviour]()
        if isinstance(made, Exception):
            raise made
        return made  # type: ignore[no-any-return]

    monkeypatch.setattr(app.state.gateway, "handle", handle)
    fast = _outcome(app, "POST", "/v1/chat/completions")
    app.fast_routes = {}  # the same app, all through Starlette
    slow = _outcome(app, "POST", "/v1/chat/completions")
    assert fast == slow
    if behaviour == "bug":
        assert fast[0] == 500 and fast[3] == "RuntimeError"
        assert fast[1] == errors.error_body("Internal gateway error.", "server_error", None)


def test_other_methods_and_paths_still_go_through_starlette(sqlite_engine: Engine) -> None:
    app = create_app(standalone=False)
    assert _outcome(app, "GET", "/v1/chat/completions")[0] == 405
    assert _outcome(app, "POST", "/v1/nothing-here")[0] == 404
