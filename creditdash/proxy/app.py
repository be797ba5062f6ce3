"""The gateway's ASGI app, built by a factory.

Mounted in the Reflex backend (one port with the dashboard) and runnable alone with
`creditdash gateway`. It never imports Reflex state or pages. It is a plain Starlette app
(FastAPI's core): routes take the raw request and return raw responses, with no validation or
telemetry layers between the client and the meter, since every microsecond here is per request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Match, Route

from creditdash.billing.balances import customer_balance
from creditdash.billing.models import UsageRecord
from creditdash.core import db
from creditdash.core.ids import new_id
from creditdash.core.money import format_credits
from creditdash.core.settings import Settings, get_settings
from creditdash.proxy import cors, errors
from creditdash.proxy.auth import KeyInfo
from creditdash.proxy.cors import CorsPolicy
from creditdash.proxy.gateway import Gateway
from creditdash.proxy.messages_routes import (
    anthropic_errors,
    anthropic_model_list,
    messages_routes,
    wants_anthropic_shape,
)
from creditdash.proxy.responses_routes import responses_routes
from creditdash.proxy.snapshot import ModelEntry, load_snapshot
from creditdash.proxy.wires.messages import MESSAGES

log = logging.getLogger(__name__)


def _json(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _generation(customer_id: str, request_id: str) -> dict[str, object] | None:
    with db.session_scope(readonly=True) as session:
        record = session.get(UsageRecord, request_id)
        # Ownership is part of the lookup: another customer's id is simply not found.
        if record is None or record.customer_id != customer_id:
            return None
        return {
            "id": record.id,
            "object": "generation",
            "created_at": record.created_at.isoformat(),
            "endpoint": record.endpoint,
            "upstream_endpoint": record.upstream_endpoint,
            "model": record.public_model,
            "provider": record.provider,
            "upstream_model": record.upstream_model,
            "stream": record.stream,
            "status": record.status,
            "http_status": record.http_status,
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "cached_tokens": record.cached_tokens,
            "reasoning_tokens": record.reasoning_tokens,
            "cache_write_tokens": record.cache_write_tokens,
            "usage_source": record.usage_source,
            "cost": format_credits(record.price_micros),
            "unbilled": format_credits(record.unbilled_micros),
            "balance_after": format_credits(record.balance_after_micros),
            "latency_ms": record.latency_ms,
            "ttfb_ms": record.ttfb_ms,
            "attempts": record.attempts,
            "attempt_log": orjson.loads(record.attempts_json),
        }


def _balance(customer_id: str) -> dict[str, str]:
    with db.session_scope(readonly=True) as session:
        return customer_balance(session, customer_id).as_json()


# Set when the dashboard started with a configuration check that failed (see check_startup):
# its health check then answers 503 so a load balancer sends it nothing.
_startup_problem: list[str] = []


async def check_mounted_startup() -> None:
    """For the gateway mounted in the dashboard (a lifespan task there): the same check as a
    standalone gateway, which refuses to start; here the failure is logged and /healthz fails."""
    try:
        await asyncio.to_thread(check_startup)
    except (RuntimeError, ValueError) as exc:  # ValueError: pydantic refused a setting
        _startup_problem.append(str(exc))
        log.critical("gateway misconfigured: %s", exc)


def gateway_routes(gateway: Gateway) -> list[Route]:
    async def healthz(_request: Request) -> Response:
        if _startup_problem:
            return JSONResponse(
                {"status": "misconfigured", "error": _startup_problem[0]}, status_code=503
            )
        if await asyncio.to_thread(db.ping):
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)

    async def chat(request: Request) -> Response:
        return await gateway.handle(request, "chat")

    async def completions(request: Request) -> Response:
        return await gateway.handle(request, "completions")

    async def embeddings(request: Request) -> Response:
        return await gateway.handle(request, "embeddings")

    async def models(request: Request) -> Response:
        # An Anthropic client (it sends anthropic-version) may authenticate with x-api-key and
        # gets Anthropic's list shape, and its errors in Anthropic's shape.
        if wants_anthropic_shape(request):
            return await anthropic_models(request)
        key = await gateway.authenticate(request)
        data = [
            {"id": m.name, "object": "model", "created": m.created, "owned_by": "creditdash"}
            for m in await usable_models(key)
        ]
        return _json({"object": "list", "data": data})

    async def usable_models(key: KeyInfo) -> list[ModelEntry]:
        snapshot = await gateway.catalog.get()
        return [m for name, m in sorted(snapshot.models.items()) if m.routes and key.may_use(name)]

    @anthropic_errors
    async def anthropic_models(request: Request) -> Response:
        key = await gateway.authenticate(request, api_key_header=True)
        return _json(anthropic_model_list(await usable_models(key)))

    async def usable_model(key: KeyInfo, name: str) -> ModelEntry:
        model = (await gateway.catalog.get()).models.get(name)
        if model is None or not model.routes or not key.may_use(name):
            raise errors.model_not_found(name)
        return model

    async def model(request: Request) -> Response:
        name = request.path_params["model_id"]
        if wants_anthropic_shape(request):
            return await anthropic_model(request)
        found = await usable_model(await gateway.authenticate(request), name)
        return _json(
            {"id": found.name, "object": "model", "created": found.created,
             "owned_by": "creditdash"}
        )  # fmt: skip

    @anthropic_errors
    async def anthropic_model(request: Request) -> Response:
        key = await gateway.authenticate(request, api_key_header=True)
        found = await usable_model(key, request.path_params["model_id"])
        return _json(anthropic_model_list([found])["data"][0])

    async def credits(request: Request) -> Response:
        key = await gateway.authenticate(request)
        return _json(await asyncio.to_thread(_balance, key.customer_id))

    async def generation(request: Request) -> Response:
        key = await gateway.authenticate(request)
        request_id = request.query_params.get("id", "")
        found = None
        if 0 < len(request_id) <= 40:
            found = await asyncio.to_thread(_generation, key.customer_id, request_id)
        if found is None:
            raise errors.GatewayError(
                404, "No generation with that id.", "invalid_request_error", "not_found"
            )
        return _json(found)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        # Model names may hold a slash ("vendor/model").
        Route("/v1/models/{model_id:path}", model, methods=["GET"]),
        Route("/v1/credits", credits, methods=["GET"]),
        Route("/v1/generation", generation, methods=["GET"]),
    ]
    routes += messages_routes(gateway)
    routes += responses_routes(gateway)
    return routes


async def on_gateway_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.GatewayError)
    return errors.error_response(exc)


async def on_unexpected(_request: Request, exc: Exception) -> Response:
    log.error("gateway request failed", exc_info=exc)
    return errors.error_response(
        errors.GatewayError(500, "Internal gateway error.", "server_error", None)
    )


class UnknownGatewayPath:
    """Every /v1 path no route serves, and a served path asked with another method: a JSON
    error (404 unknown_url, 405 method_not_allowed with Allow), in Anthropic's shape for an
    Anthropic client, instead of the framework's plain text. An ASGI app, so that its route
    takes every method."""

    def __init__(self, served: list[Route]) -> None:
        self.served = served

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        allowed = sorted(
            {
                m
                for r in self.served
                if r.matches(scope)[0] == Match.PARTIAL
                for m in r.methods or ()
            }
        )
        shown = f"{request.method} {request.url.path[:200]}"
        if allowed:
            error = errors.GatewayError(
                405, f"Method not allowed ({shown}); this path takes {', '.join(allowed)}.",
                "invalid_request_error", "method_not_allowed",
                headers={"allow": ", ".join(allowed)},
            )  # fmt: skip
        else:
            error = errors.GatewayError(
                404, f"Unknown request URL ({shown}).", "invalid_request_error", "unknown_url"
            )
        if wants_anthropic_shape(request):
            response = MESSAGES.error_response(error, None)
        else:
            response = errors.error_response(error)
        await response(scope, receive, send)


def unknown_path_routes(served: list[Route]) -> list[Route]:
    """The catch-alls for /v1, after every served route (and before anything mounted)."""
    unknown = UnknownGatewayPath(served)
    return [Route("/v1", unknown), Route("/v1/{rest:path}", unknown)]


Endpoint = Callable[[Request], Awaitable[Response]]
# The proxied endpoints: the only routes on every metered request's path.
PROXIED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


class GatewayApp(Starlette):
    """Starlette, with the proxied POSTs dispatched straight to their endpoint.

    On those routes every request otherwise passes ServerErrorMiddleware, ExceptionMiddleware,
    the router and Starlette's per-route wrapper, three of them wrapping the ASGI send once
    more, for error handling that comes down to two cases here, done the same way:
    a GatewayError before the answer becomes its OpenAI-shaped error answer (on_gateway_error),
    anything else becomes the 500 answer (on_unexpected) and then goes on to the server's log,
    as ServerErrorMiddleware does. Everything else (other paths and methods, a root path,
    lifespan) goes through Starlette as before.
    """

    fast_routes: dict[str, Endpoint]
    cors: CorsPolicy

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not cors.is_gateway_path(scope["path"]):
            await super().__call__(scope, receive, send)
            return
        origin = cors.header(scope, b"origin")
        if origin is not None:
            allowed = self.cors.allow_origin(origin)
            if cors.is_preflight(scope):
                await self._preflight(scope, send, allowed)
                return
            if allowed is not None:
                send = cors.adding_headers(
                    send, functools.partial(self.cors.answer_headers, allowed)
                )
        endpoint = None
        if scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.fast_routes.get(scope["path"])
        if endpoint is None:
            # Every /v1 answer has a request id: errors get theirs where they are written
            # (errors.py), the other answers of these routes (lists, balances) here.
            await super().__call__(scope, receive, cors.adding_headers(send, _fresh_request_id))
            return
        scope["app"] = self
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except errors.GatewayError as exc:
            response = await on_gateway_error(request, exc)
        except HTTPException as exc:  # Starlette's own default answer for it
            response = PlainTextResponse(exc.detail, exc.status_code, exc.headers)
        except Exception as exc:
            await (await on_unexpected(request, exc))(scope, receive, send)
            raise
        if not any(name == b"x-request-id" for name, _ in response.raw_headers):
            response.raw_headers += _fresh_request_id()  # the metered answers all have theirs
        # Failures while the answer is being sent happen after it started (a stream): they
        # reach the server as they would through Starlette, which re-raises them there too.
        await response(scope, receive, send)

    async def _preflight(self, scope: Any, send: Any, allowed: bytes | None) -> None:
        """A CORS preflight: 204 without authentication, with the CORS headers when allowed."""
        requested = cors.header(scope, b"access-control-request-headers")
        headers = self.cors.preflight_headers(allowed, requested)
        headers += _fresh_request_id()
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _fresh_request_id() -> list[tuple[bytes, bytes]]:
    return [(b"x-request-id", new_id("req").encode("ascii"))]


def check_startup(settings: Settings | None = None) -> None:
    """Refuse to serve with a configuration that would fail every request.

    Outside development the secret key must be set, and it must open the upstream keys stored
    in the catalog: a gateway started with a missing or different key would otherwise pass its
    health check and answer 500 to every completion. A database that cannot be reached yet is
    only logged (the health check reports it, and the gateway recovers when it comes back).
    """

    (settings or get_settings()).resolved_secret_key()  # RuntimeError outside development
    try:
        with db.session_scope(readonly=True) as session:
            load_snapshot(session)
    except ValueError as exc:  # a stored secret the configured key cannot open
        raise RuntimeError(f"refusing to start: {exc}") from None
    except SQLAlchemyError:
        log.warning("database unreachable at start; serving 503 until it answers", exc_info=True)


def build_app(
    gateway: Gateway,
    *,
    extra_routes: list[Route],
    lifespan: Callable[[Starlette], Any] | None,
) -> GatewayApp:
    """The gateway's ASGI app: its own routes (the proxied ones also on the fast dispatch) plus
    the routes the composition root adds beside them (server.py)."""
    routes = gateway_routes(gateway)
    app = GatewayApp(
        routes=routes + extra_routes + unknown_path_routes(routes),
        exception_handlers={errors.GatewayError: on_gateway_error, Exception: on_unexpected},
        lifespan=lifespan,
    )
    app.fast_routes = {
        route.path: route.endpoint
        for route in routes
        if route.path in PROXIED_PATHS and route.methods == {"POST"}
    }
    app.cors = CorsPolicy(gateway.settings.cors_origins)
    app.state.gateway = gateway
    return app
