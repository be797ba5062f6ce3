"""Opening the upstream: the attempts over a model's routes, up to the first usable answer.

Each attempt asks the route's upstream wire (wires/) which API it calls, what it sends and how
its answer reads as the chat wire the core meters. It re-runs the SSRF check (cached briefly)
and pins the connection to the address that passed, then sends the request through the
gateway's own pool (upstream.py) or, when httpx must carry it (the mounted sandbox, a proxy
from the environment), through httpx's transport. Which
failures fall through to the next route is RoutePlanner's and the model's policy's call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from creditdash.catalog.models import SANDBOX_BASE_URL
from creditdash.catalog.urlguard import PinnedURL, pin_base_url
from creditdash.core.errors import ValidationFailed
from creditdash.core.settings import Settings
from creditdash.proxy import whole_answers
from creditdash.proxy.call import Attempt, Call, ms_since
from creditdash.proxy.routing import RoutePlanner, failure_kind
from creditdash.proxy.sandbox import create_sandbox_app
from creditdash.proxy.snapshot import RouteTarget
from creditdash.proxy.upstream import ResponseLike, Target, UpstreamPool
from creditdash.proxy.wires import upstream_wire

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
URL_RECHECK_S = 30.0
MAX_DIRECT_TARGETS = 1024


class Forwarder:
    """The gateway's way out: its httpx client, its own connection pool and their caches."""

    def __init__(self, settings: Settings, routes: RoutePlanner) -> None:
        self.settings = settings
        self.routes = routes
        self._client: httpx.AsyncClient | None = None
        self._client_headers: dict[str, str] = {}
        # Plain HTTP(S) upstreams go through the gateway's own client (upstream.py); httpx
        # keeps what is mounted on it (the sandbox) and proxies configured in the environment.
        self._pool: UpstreamPool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._targets: dict[PinnedURL, Target | None] = {}
        self._url_checked: dict[str, tuple[float, PinnedURL]] = {}

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                limits=httpx.Limits(
                    max_connections=self.settings.upstream_max_connections,
                    max_keepalive_connections=self.settings.upstream_max_idle_connections,
                ),
                mounts={
                    SANDBOX_BASE_URL.rsplit("/", 1)[0]: httpx.ASGITransport(create_sandbox_app())
                },
            )
            self._client_headers = dict(self._client.headers)
            self._targets.clear()
        return self._client

    def pool(self) -> UpstreamPool:
        """The upstream connection pool of the running event loop (connections belong to one
        loop; a pool from another loop is left to its own closing)."""
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            self._pool = UpstreamPool(
                max_connections=self.settings.upstream_max_connections,
                max_idle=self.settings.upstream_max_idle_connections,
            )
            self._pool_loop = loop
        return self._pool

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()

    def _direct_target(self, client: httpx.AsyncClient, pinned: PinnedURL) -> Target | None:
        """The pinned URL parsed for the gateway's own client, or None when httpx must carry
        the request (a mounted transport such as the sandbox, or a proxy from the environment)."""
        try:
            return self._targets[pinned]
        except KeyError:
            pass
        url = httpx.URL(pinned.base_url)
        direct: Target | None = None
        if client._transport_for_url(url) is client._transport:  # httpx is pinned
            direct = Target(
                pinned.base_url, host_header=pinned.host_header, sni=pinned.tls_server_name
            )
        if len(self._targets) > MAX_DIRECT_TARGETS:  # pinned addresses change over time
            self._targets.clear()
        self._targets[pinned] = direct
        return direct

    async def open(self, call: Call) -> tuple[ResponseLike, RouteTarget] | None:
        """The first answer worth passing on (a success or a 4xx the request caused), with its
        route; None when every attempt failed or the request's budget ran out. Every attempt,
        failed or not, is appended to call.attempts."""
        client = self.client()
        policy = call.model.policy
        for route in self.routes.ordered(call.model)[: policy.max_attempts]:
            call.upstream_error = None  # the last attempt's, if it was an error answer
            remaining = call.deadline - time.perf_counter()
            if remaining <= 0:
                break
            begun = time.perf_counter()
            wire = upstream_wire(route.provider_kind)
            endpoint = wire.endpoint(call, route) if wire is not None else None
            if wire is None or endpoint is None:
                # This route's upstream cannot serve this API (embeddings on a Messages-only
                # provider, say): the next route may.
                call.attempts.append(_attempt(route, "unsupported", None, begun))
                continue
            target = await self._checked_target(route)
            if target is None:
                call.attempts.append(_attempt(route, "refused", None, begun))
                continue
            timeout_s = min(float(route.timeout_s), remaining)
            if policy.attempt_timeout_s:
                timeout_s = min(timeout_s, float(policy.attempt_timeout_s))
            headers = {**self._client_headers, **wire.headers(route)}
            if target.host_header:
                headers["host"] = target.host_header
            content = wire.body(call, route)
            path = wire.path(endpoint)
            direct = self._direct_target(client, target)
            status: int | None = None
            failure: str | None
            response: ResponseLike
            try:
                if direct is not None:
                    response = await self.pool().post(
                        direct,
                        path,
                        headers.items(),
                        content,
                        connect_timeout=min(CONNECT_TIMEOUT_S, timeout_s),
                        read_timeout=timeout_s,
                        pool_timeout=timeout_s,
                        # The whole exchange, body included, ends within the request's budget.
                        total_timeout=max(0.0, call.deadline - time.perf_counter()),
                    )
                else:
                    response = await _send(client, _httpx_request(path, target, headers, content,
                                                                  timeout_s))  # fmt: skip
            except httpx.TimeoutException:
                failure = "timeout"
            except httpx.HTTPError:
                failure = "connect_error"
            else:
                status = response.status_code
                failure = failure_kind(status)
                viewed: ResponseLike | None = None
                if failure is None:
                    viewed, failure = await _usable(
                        call, response, functools.partial(wire.view, call, route)
                    )
                if viewed is not None:
                    call.attempts.append(
                        _attempt(route, "ok" if status < 400 else "http_error", status, begun)
                    )
                    self.routes.succeeded(route)
                    call.upstream_endpoint = endpoint
                    return viewed, route
                if status == 429:
                    call.upstream_retry_after = retry_after_of(response)
                await response.aclose()
            outcome = failure if failure in ("timeout", "connect_error") else "http_error"
            call.attempts.append(_attempt(route, outcome, status, begun))
            self.routes.failed(route, call.model)
            # A broken route (our key, our model name, a redirect) always tries the next one;
            # upstream trouble does only where the model's fallback policy says so.
            if failure != "route" and failure not in policy.fallback_on:
                break
        return None

    async def _checked_target(self, route: RouteTarget) -> PinnedURL | None:
        """The request-time SSRF check: the host is resolved again (in a thread, since DNS
        blocks) and the connection is pinned to the address that passed, so a second DNS
        answer cannot send it elsewhere. A verdict is reused for URL_RECHECK_S seconds."""
        now = time.monotonic()
        cached = self._url_checked.get(route.base_url)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            target = await asyncio.to_thread(
                pin_base_url,
                route.base_url,
                kind=route.provider_kind,
                allow_private=self.settings.allow_private_upstreams,
            )
        except ValidationFailed:
            log.warning("refused upstream %s for provider %s", route.base_url, route.provider_name)
            return None
        self._url_checked[route.base_url] = (now + URL_RECHECK_S, target)
        return target


async def _usable(
    call: Call, response: ResponseLike, view: Callable[[ResponseLike], ResponseLike]
) -> tuple[ResponseLike | None, str | None]:
    """An answer with a usable status as the core reads it (view: the route's wire's chat
    view), or None and the failure kind it counts as. The body of a success is read here when
    it is whole anyway (a non-stream answer, or a stream request answered with JSON): a 200
    that is only an error then falls through as a 5xx does, and a chat completion sent to a
    stream request is relayed as its events (whole_answers.py)."""
    status = response.status_code
    if status >= 400 or (call.stream and not whole_answers.is_json(response)):
        return view(response), None
    try:
        raw = await response.aread()
    except httpx.TimeoutException:
        return None, "timeout"
    except httpx.HTTPError:
        return None, "connect_error"
    # Read whole: its connection goes back to the pool now (nothing else holds the response).
    await response.aclose()
    data = whole_answers.parse(raw)
    error = whole_answers.error_of(data)
    if error is not None:
        call.upstream_error = whole_answers.error_message(error)
        return None, "5xx"
    whole = whole_answers.WholeBody(status, raw)
    viewed = view(whole)
    if call.stream and viewed is whole:  # the chat wire itself: the completion as its events
        return whole_answers.WholeBody(status, whole_answers.completion_events(
            call.endpoint, data)), None  # fmt: skip
    return viewed, None


def retry_after_of(response: ResponseLike) -> str | None:
    """An upstream answer's Retry-After header as given, or None: the gateway's own client
    keeps it as an attribute, an httpx response in its headers."""
    value = getattr(response, "retry_after", None)
    if value is None:
        headers = getattr(response, "headers", None)
        value = headers.get("retry-after") if headers is not None else None
    return value if isinstance(value, str) else None


def _attempt(route: RouteTarget, outcome: str, status: int | None, begun: float) -> Attempt:
    return Attempt(route.provider_name, route.upstream_model, outcome, status, ms_since(begun))


async def _send(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """client.send(request, stream=True) without the layers the gateway never uses: auth,
    redirects (never followed anyway), event hooks, and the client's cookie jar, which would
    otherwise carry one upstream's cookies into every customer's later requests. The client's
    default headers are merged by the caller; its transport (and any mounted one: the sandbox,
    proxies from the environment) still carries the request, with the request's timeouts."""
    transport = client._transport_for_url(request.url)  # httpx is pinned; see pyproject.toml
    response = await transport.handle_async_request(request)
    response.request = request
    return response


def _httpx_request(
    path: str, target: PinnedURL, headers: dict[str, str], content: bytes, timeout_s: float
) -> httpx.Request:
    extensions: dict[str, Any] = {
        "timeout": {"connect": min(CONNECT_TIMEOUT_S, timeout_s), "read": timeout_s,
                    "write": timeout_s, "pool": timeout_s},
    }  # fmt: skip
    if target.tls_server_name:
        extensions["sni_hostname"] = target.tls_server_name
    return httpx.Request(
        "POST",
        target.base_url + path,
        content=content,
        headers=headers,
        extensions=extensions,
    )
