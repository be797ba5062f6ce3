"""A metered, proxied request, from key to settlement (DESIGN.md "A proxied request").

1. Authenticate the key (cached briefly). 2. Resolve the public model and its routes.
3. Hold the worst case; too little credit is a 402 before anything goes upstream.
4. Try routes in priority order; connect errors, timeouts, 429 and 5xx before the first byte
   fall through to the next route. 5. Meter from the upstream's usage (asking for it on
   streams), or from a marked estimate when there is none. 6. Post the hold at the actual price
   and write the usage record in one transaction; the customer sees usage.cost and a request id.

Database work runs in worker threads in short transactions; the event loop never blocks on it.
The hold and the settlement take the raw-connection path of billing/hotpath.py on dedicated
threads (dbworkers.py); everything unusual falls back to billing/metering.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from creditdash.billing import ledger, metering
from creditdash.billing.hotpath import HotLedger, PlacedHold
from creditdash.billing.models import UsageEntry
from creditdash.catalog.models import SANDBOX_BASE_URL
from creditdash.catalog.prices import TokenUsage, cost_micros, worst_case_micros
from creditdash.catalog.urlguard import PinnedURL, pin_base_url
from creditdash.core import db
from creditdash.core.dbworkers import DbWorkers
from creditdash.core.errors import InsufficientCredits, ValidationFailed
from creditdash.core.ids import new_id
from creditdash.core.money import format_credits
from creditdash.core.settings import HOLD_MARGIN_S, Settings, get_settings
from creditdash.core.timeutil import utcnow
from creditdash.proxy import errors, tokens
from creditdash.proxy.auth import KeyCache, KeyInfo
from creditdash.proxy.limits import KeyLimiter
from creditdash.proxy.sandbox import create_sandbox_app
from creditdash.proxy.snapshot import CatalogCache, ModelEntry, RouteTarget
from creditdash.proxy.upstream import ResponseLike, Target, UpstreamPool, UpstreamResponse

log = logging.getLogger(__name__)

ENDPOINT_PATHS = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}
MAX_CHOICES = 16
CONNECT_TIMEOUT_S = 10.0
KEY_TOUCH_INTERVAL_S = 60.0
URL_RECHECK_S = 30.0
MAX_SSE_LINE_BYTES = 4 * 1024 * 1024
# The same bounds the httpx client had.
MAX_UPSTREAM_CONNECTIONS = 1000
MAX_IDLE_UPSTREAM_CONNECTIONS = 200
# Metering threads per process: SQLite takes one writer at a time; PostgreSQL runs two. Every
# hold and settlement updates the usage revenue account's row, so concurrent ones queue on its
# lock until the one before commits: more threads mostly add lock waits and re-checks of the
# updated row (PostgreSQL's EvalPlanQual) to each statement, not throughput.
DB_THREADS = {"sqlite": 1}
DEFAULT_DB_THREADS = 2


@dataclass
class Attempt:
    provider: str
    upstream_model: str
    outcome: str  # ok | http_error | timeout | connect_error | refused
    status: int | None
    latency_ms: int


@dataclass
class Call:
    """Everything known about one request while it is in flight."""

    request_id: str
    endpoint: str
    key: KeyInfo
    model: ModelEntry
    body: dict[str, Any]
    stream: bool
    wants_usage: bool
    started: float
    deadline: float
    # The output the upstream was allowed over all choices: max_tokens times n (and best_of,
    # and prompts). Reported output beyond it is not charged (see _bounded).
    output_cap: int = 0
    hold_id: int | None = None
    # Set when the hold was placed on the hot path: what settling it needs, without a re-read.
    hold: PlacedHold | None = None
    # The store (engine, threads) the request's metering runs on, fixed at its reservation.
    store: MeteringStore | None = None
    attempts: list[Attempt] = field(default_factory=list)
    route: RouteTarget | None = None
    ttfb_ms: int | None = None
    relay_started: bool = False
    settle_started: bool = False
    capped_hold_micros: int = 0


class MeteringStore:
    """The database side of metering for one engine: its worker threads, the hot-path SQL for
    its dialect, and the usage revenue account's id (platform accounts are never deleted)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        dialect = engine.dialect
        self.workers = DbWorkers(engine, DB_THREADS.get(dialect.name, DEFAULT_DB_THREADS))
        self.hot = HotLedger(
            dialect.name, dialect.loaded_dbapi.IntegrityError, db.writer_lock(engine)
        )
        self._revenue_account_id: int | None = None

    def revenue_account_id(self) -> int:
        if self._revenue_account_id is None:
            with db.session_scope(engine=self.engine) as session:
                self._revenue_account_id = ledger.platform_account_id(session, ledger.USAGE_REVENUE)
        return self._revenue_account_id


@dataclass
class Outcome:
    """How a request ended, for its usage record."""

    status: str
    http_status: int
    usage: TokenUsage
    usage_source: str
    billable: bool
    # Output tokens the upstream reported beyond call.output_cap (not charged).
    disputed_completion_tokens: int = 0


class Gateway:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.keys = KeyCache()
        self.catalog = CatalogCache()
        self.limiter = KeyLimiter()
        self._client: httpx.AsyncClient | None = None
        self._client_headers: dict[str, str] = {}
        # Plain HTTP(S) upstreams go through the gateway's own client (upstream.py); httpx
        # keeps what is mounted on it (the sandbox) and proxies configured in the environment.
        self._pool: UpstreamPool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._targets: dict[PinnedURL, Target | None] = {}
        self._detached: set[asyncio.Task[Any]] = set()
        self._key_touched: dict[str, float] = {}
        self._cap_locks: dict[str, threading.Lock] = {}
        self._route_failures: dict[int, int] = {}
        self._resting_until: dict[int, float] = {}
        self._capped_holds: dict[str, int] = {}
        self._url_checked: dict[str, tuple[float, PinnedURL]] = {}
        self._store: MeteringStore | None = None
        self._store_lock = threading.Lock()
        self.hold_ttl = timedelta(seconds=self.settings.hold_ttl_s)
        # A request (all attempts, a whole stream) ends before its hold can expire; settings
        # refuse a hold lifetime that leaves less than 30 s (settings.MIN_HOLD_TTL_S).
        self.request_budget_s = float(self.settings.hold_ttl_s - HOLD_MARGIN_S)

    # ------------------------------------------------------------------------------ plumbing

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
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
                max_connections=MAX_UPSTREAM_CONNECTIONS, max_idle=MAX_IDLE_UPSTREAM_CONNECTIONS
            )
            self._pool_loop = loop
        return self._pool

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
        if len(self._targets) > 1024:  # pinned addresses change over time; keep it bounded
            self._targets.clear()
        self._targets[pinned] = direct
        return direct

    async def aclose(self) -> None:
        if self._detached:
            await asyncio.gather(*self._detached, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()
        store, self._store = self._store, None
        if store is not None:
            await asyncio.to_thread(store.workers.close)

    def store(self) -> MeteringStore:
        """The metering store of the process engine (rebuilt if the engine was replaced)."""
        engine = db.get_engine()
        store = self._store
        if store is None or store.engine is not engine:
            with self._store_lock:
                store = self._store
                if store is None or store.engine is not engine:
                    old, store = store, MeteringStore(engine)
                    self._store = store
                    if old is not None:  # its queued jobs finish first
                        threading.Thread(target=old.workers.close, daemon=True).start()
        return store

    def detach(self, call: Call, work: Callable[..., Any], *args: Any) -> None:
        """Run work(connection, *args) on a metering thread from a task no cancellation can
        reach (a queued job runs to the end in any case).

        Used when a client disconnects mid-stream: the generator is being cancelled, but the
        settlement must still happen exactly once.
        """
        store = call.store or self.store()
        task = asyncio.get_running_loop().create_task(store.workers.run(work, *args))
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)

    async def authenticate(self, request: Request) -> KeyInfo:
        key = await self.keys.authenticate(request.headers.get("authorization"))
        if key is None:
            raise errors.unauthorized()
        return key

    # ------------------------------------------------------------------------------- request

    async def handle(self, request: Request, endpoint: str) -> Response:
        started = time.perf_counter()
        key = await self.authenticate(request)
        body_bytes = await _read_limited(request, self.settings.max_body_bytes)
        body = _parse_object(body_bytes)
        model_name = body.get("model")
        if not isinstance(model_name, str) or not model_name:
            raise errors.bad_request("'model' is required.", "missing_model")
        snapshot = await self.catalog.get()
        model = snapshot.models.get(model_name)
        if model is None or not model.routes or not key.may_use(model_name):
            raise errors.model_not_found(model_name)
        if not self.limiter.allow_request(key.key_id, key.rpm_limit):
            raise errors.rate_limited(
                f"Rate limit reached: {key.rpm_limit} requests per minute.", "rate_limit_exceeded"
            )
        if not self.limiter.enter(key.key_id, key.concurrency_limit):
            raise errors.rate_limited(
                f"Too many concurrent requests: the limit is {key.concurrency_limit}.",
                "concurrency_limit_exceeded",
            )
        handed_over = False
        try:
            call = self._new_call(endpoint, key, model, body, started)
            await self._reserve(call, body_bytes)
            try:
                response = await self._forward(call)
            except BaseException:
                self.detach(call, self._void_quietly, call)
                raise
            handed_over = isinstance(response, StreamingResponse)
            return response
        finally:
            if not handed_over:
                self.limiter.leave(key.key_id)

    def _new_call(
        self, endpoint: str, key: KeyInfo, model: ModelEntry, body: dict[str, Any], started: float
    ) -> Call:
        flag = body.get("stream", False)
        if flag is not None and not isinstance(flag, bool):
            raise errors.bad_request("'stream' must be true or false.")
        stream = endpoint != "embeddings" and flag is True
        options = body.get("stream_options")
        wants_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        return Call(
            request_id=new_id("req"),
            endpoint=endpoint,
            key=key,
            model=model,
            body=body,
            stream=stream,
            wants_usage=wants_usage,
            started=started,
            deadline=started + self.request_budget_s,
        )

    async def _reserve(self, call: Call, body_bytes: bytes) -> None:
        call.output_cap = _max_output(call.endpoint, call.body, call.model) * _output_multiplier(
            call.endpoint, call.body
        )
        media = _media_parts(call.endpoint, call.body, call.model)
        amount = worst_case_micros(
            call.model.price,
            prompt_tokens=tokens.hold_prompt_tokens(body_bytes)
            + media * call.model.media_part_tokens,
            max_output_tokens=call.output_cap,
        )
        try:
            call.store = self.store()
            call.hold_id = await call.store.workers.run(self._reserve_sync, call, amount)
        except InsufficientCredits:
            raise errors.insufficient_credits() from None

    def _reserve_sync(self, connection: Any, call: Call, amount: int) -> int | None:
        cap = call.key.monthly_spend_cap_micros
        if cap is None:
            return self._hold(connection, call, amount)
        # The spend cap is checked and the hold placed under one lock per key, counting what
        # this process already holds for the key: concurrent requests cannot all slip under
        # the cap. (Across gateway processes the cap is per process, like the rate limits.)
        with self._cap_locks.setdefault(call.key.key_id, threading.Lock()):
            with db.session_scope(readonly=True) as session:
                spent = metering.key_spend_since(
                    session, api_key_id=call.key.key_id, since=metering.month_start()
                )
            if spent + self._capped_holds.get(call.key.key_id, 0) + amount > cap:
                raise errors.rate_limited(
                    "This request could pass this key's monthly spend cap.", "spend_cap_reached"
                )
            hold_id = self._hold(connection, call, amount)
            self._capped_holds[call.key.key_id] = (
                self._capped_holds.get(call.key.key_id, 0) + amount
            )
            call.capped_hold_micros = amount
            return hold_id

    def _hold(self, connection: Any, call: Call, amount: int) -> int | None:
        store = call.store or self.store()
        if amount:
            placed = store.hot.hold(
                connection,
                request_id=call.request_id,
                account_id=call.key.account_id,
                revenue_account_id=store.revenue_account_id(),
                amount_micros=amount,
                expires_at=utcnow() + self.hold_ttl,
            )
            if placed is not None:
                call.hold = placed
                return placed.id
        # A free request, or the hold did not simply fit: the ledger decides (402, replay).
        with db.session_scope(engine=store.engine) as session:
            return metering.reserve(
                session,
                request_id=call.request_id,
                account_id=call.key.account_id,
                amount_micros=amount,
                ttl=self.hold_ttl,
            )

    def _forget_capped_hold(self, call: Call) -> None:
        if call.capped_hold_micros:
            with self._cap_locks.setdefault(call.key.key_id, threading.Lock()):
                left = self._capped_holds.get(call.key.key_id, 0) - call.capped_hold_micros
                self._capped_holds[call.key.key_id] = max(0, left)
            call.capped_hold_micros = 0

    # ------------------------------------------------------------------------------ upstream

    async def _forward(self, call: Call) -> Response:
        opened = await self._open_upstream(call)
        if opened is None:
            timed_out = bool(call.attempts) and call.attempts[-1].outcome == "timeout"
            error = errors.upstream_timeout() if timed_out else errors.upstream_failed()
            await self._finish(call, _failed(error.status))
            return errors.error_response(error, call.request_id)
        response, route = opened
        call.route = route
        if response.status_code >= 400:
            return await self._pass_through_error(call, response, route)
        if call.stream:
            return MeteredStream(self, call, response)
        return await self._complete(call, response)

    def _ordered_routes(self, model: ModelEntry) -> list[RouteTarget]:
        """Lower priority first; within a priority, a weighted random order. Routes resting
        after repeated failures go last, and only run when no other route is left."""
        ordered: list[RouteTarget] = []
        for priority in sorted({r.priority for r in model.routes}):
            group = [r for r in model.routes if r.priority == priority and r.weight > 0]
            if len(group) == 1:  # nothing to draw (the usual case)
                ordered.append(group[0])
                continue
            while group:
                pick = random.choices(group, weights=[r.weight for r in group])[0]
                ordered.append(pick)
                group.remove(pick)
        now = time.monotonic()
        ready = [r for r in ordered if self._resting_until.get(r.route_id, 0.0) <= now]
        return ready or ordered

    def _route_failed(self, route: RouteTarget, model: ModelEntry) -> None:
        failures = self._route_failures.get(route.route_id, 0) + 1
        if failures >= model.policy.cooldown_failures:
            self._resting_until[route.route_id] = time.monotonic() + model.policy.cooldown_s
            failures = 0
            log.warning("route %s of %s rests for %ss", route.route_id, model.name,
                        model.policy.cooldown_s)  # fmt: skip
        self._route_failures[route.route_id] = failures

    async def _open_upstream(self, call: Call) -> tuple[ResponseLike, RouteTarget] | None:
        client = self.client()
        policy = call.model.policy
        for route in self._ordered_routes(call.model)[: policy.max_attempts]:
            remaining = call.deadline - time.perf_counter()
            if remaining <= 0:
                break
            begun = time.perf_counter()
            target = await self._checked_target(route)
            if target is None:
                call.attempts.append(_attempt(route, "refused", None, begun))
                continue
            timeout_s = min(float(route.timeout_s), remaining)
            if policy.attempt_timeout_s:
                timeout_s = min(timeout_s, float(policy.attempt_timeout_s))
            headers = {**self._client_headers, **_upstream_headers(route)}
            if target.host_header:
                headers["host"] = target.host_header
            content = orjson.dumps(self._upstream_body(call, route))
            direct = self._direct_target(client, target)
            status: int | None = None
            failure: str | None
            response: ResponseLike
            try:
                if direct is not None:
                    response = await self.pool().post(
                        direct,
                        ENDPOINT_PATHS[call.endpoint],
                        headers.items(),
                        content,
                        connect_timeout=min(CONNECT_TIMEOUT_S, timeout_s),
                        read_timeout=timeout_s,
                        pool_timeout=timeout_s,
                        # The whole exchange, body included, ends within the request's budget.
                        total_timeout=max(0.0, call.deadline - time.perf_counter()),
                    )
                else:
                    response = await _send(client, _httpx_request(call, target, headers, content,
                                                                  timeout_s))  # fmt: skip
            except httpx.TimeoutException:
                failure = "timeout"
            except httpx.HTTPError:
                failure = "connect_error"
            else:
                status = response.status_code
                failure = _failure_kind(status)
                if failure is None:
                    call.attempts.append(
                        _attempt(route, "ok" if status < 400 else "http_error", status, begun)
                    )
                    self._route_failures[route.route_id] = 0
                    return response, route
                await response.aclose()
            outcome = failure if failure in ("timeout", "connect_error") else "http_error"
            call.attempts.append(_attempt(route, outcome, status, begun))
            self._route_failed(route, call.model)
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

    def _upstream_body(self, call: Call, route: RouteTarget) -> dict[str, Any]:
        body = dict(call.body)
        body["model"] = route.upstream_model
        if call.stream:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                      "include_usage": True}  # fmt: skip
        return body

    async def _pass_through_error(
        self, call: Call, response: ResponseLike, route: RouteTarget
    ) -> Response:
        """An upstream 4xx caused by the request: its status and (redacted) body, no charge."""
        try:
            raw = await response.aread()
        except httpx.HTTPError:
            raw = errors.error_body("The upstream rejected the request.", "upstream_error", None)
        finally:
            await response.aclose()
        await self._finish(call, _failed(response.status_code))
        return Response(
            errors.redact(raw, (route.api_key, *route.extra_headers.values())),
            status_code=response.status_code,
            media_type="application/json",
            headers={"x-request-id": call.request_id},
        )

    # ----------------------------------------------------------------------------- non-stream

    async def _complete(self, call: Call, response: ResponseLike) -> Response:
        try:
            raw = await response.aread()
        except httpx.TimeoutException:
            await self._finish(call, _failed(504))
            return errors.error_response(errors.upstream_timeout(), call.request_id)
        except httpx.HTTPError:
            await self._finish(call, _failed(502))
            return errors.error_response(errors.upstream_failed(), call.request_id)
        finally:
            await response.aclose()
        call.ttfb_ms = _ms_since(call.started)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            await self._finish(call, _failed(502))
            return errors.error_response(errors.upstream_failed(), call.request_id)
        usage, source = _usage_of(call, data.get("usage"), lambda: tokens.choices_text(data))
        outcome = _outcome(call, "ok", 200, usage, source, billable=True)
        try:
            price = await self._finish(call, outcome)
        except _SettlementFailed:
            # Not metered, so not delivered: the hold is voided and the request recorded.
            return errors.error_response(errors.metering_failed(), call.request_id)
        placeholder = _cost_placeholder()
        data["usage"] = _usage_for_client(data.get("usage"), outcome, placeholder)
        return Response(
            _with_cost(orjson.dumps(data), placeholder, price),
            media_type="application/json",
            headers={"x-request-id": call.request_id},
        )

    # --------------------------------------------------------------------------------- stream

    async def _relay(self, call: Call, response: ResponseLike) -> AsyncIterator[bytes]:
        """Relay the upstream's events and settle exactly once: at the end of the stream, on an
        upstream failure, or (from a detached task) when the client goes away.

        Events are forwarded as the upstream wrote them, a network read at a time. The latest
        chunk that carries usage is held back until the next one arrives; the last of them is
        rewritten at the end with the cost (or dropped if the client did not ask for usage)."""
        call.relay_started = True
        lines = _SSELines()
        payloads: list[bytes] = []  # what was relayed, parsed again only to estimate usage
        usage_chunk: dict[str, Any] | None = None
        try:
            budget_s = max(0.0, call.deadline - time.perf_counter())
            async with asyncio.timeout(budget_s):
                async for block in response.aiter_bytes():
                    if call.ttfb_ms is None:
                        call.ttfb_ms = _ms_since(call.started)
                    out: list[bytes] = []
                    for payload in lines.feed(block):
                        if payload == b"[DONE]":
                            lines.done = True
                            break
                        chunk = _parse_chunk(payload)
                        if usage_chunk is not None:  # it was not the last: pass it on as is
                            out += self._intermediate(call, usage_chunk)
                            usage_chunk = None
                        payloads.append(payload)
                        if isinstance(chunk.get("usage"), dict):
                            usage_chunk = chunk
                        else:
                            out.append(b"data: " + payload + b"\n\n")
                    if out:
                        yield b"".join(out)
                    if lines.done:
                        break
            if not lines.done:
                # Closed cleanly but without [DONE]: the answer may be cut short, and the client
                # must be able to tell (no [DONE] from us either).
                raise _StreamIncomplete()
            usage: dict[str, Any] = usage_chunk["usage"] if usage_chunk is not None else {}
            tokens_used, source = _usage_of(call, usage or None, lambda: _produced_text(payloads))
            outcome = _outcome(call, "ok", 200, tokens_used, source, True)
            price = await self._finish(call, outcome)
            final = None
            if usage_chunk is not None:
                final = self._usage_chunk(call, usage_chunk, usage, outcome, price)
            # The usage chunk and the end marker leave in one write.
            yield _LastChunk((final or b"") + b"data: [DONE]\n\n")
        except (httpx.HTTPError, _StreamProblem, TimeoutError) as problem:
            incomplete = isinstance(problem, _StreamIncomplete)
            if not call.settle_started:
                text = _produced_text(payloads)
                # Usage the upstream sent before it stopped is its own count of what it did.
                seen = usage_chunk["usage"] if usage_chunk is not None else None
                tokens_used, source = _usage_of(call, seen, lambda: text)
                status = "upstream_incomplete" if incomplete else "upstream_error_mid_stream"
                failed = _outcome(call, status, 502, tokens_used, source, bool(text))
                await self._finish(call, failed)
            timed_out = isinstance(problem, httpx.TimeoutException | TimeoutError)
            if incomplete:
                error = errors.upstream_incomplete()
            elif isinstance(problem, _SettlementFailed):
                error = errors.metering_failed()
            else:
                error = errors.upstream_timeout() if timed_out else errors.upstream_failed()
            yield _LastChunk(
                b"data: " + errors.error_body(error.message, error.type, error.code) + b"\n\n"
            )
        finally:
            if not call.settle_started:
                # The client went away mid-stream: charge what was produced, once, from a task
                # this cancelled generator cannot take down with it.
                call.settle_started = True
                relayed = list(payloads)

                def settle_after_disconnect(connection: Any) -> None:
                    tokens_used, source = _usage_of(call, None, lambda: _produced_text(relayed))
                    # The prompt was consumed even if no text came back: always billable.
                    outcome = _outcome(call, "client_disconnected", 499, tokens_used, source, True)
                    self._finish_sync(connection, call, outcome)

                self.detach(call, settle_after_disconnect)
            self._release(call, response)

    def _intermediate(self, call: Call, chunk: dict[str, Any]) -> list[bytes]:
        """A chunk with usage that turned out not to be the last (running usage statistics)."""
        if call.wants_usage:
            return [b"data: " + orjson.dumps(chunk) + b"\n\n"]
        del chunk["usage"]
        return [b"data: " + orjson.dumps(chunk) + b"\n\n"] if chunk.get("choices") else []

    def _release(self, call: Call, response: ResponseLike) -> None:
        """Give back the key's concurrency slot and close the upstream, without awaiting."""
        self.limiter.leave(call.key.key_id)
        if isinstance(response, UpstreamResponse):
            response.close()  # nothing to await: back to the pool, or closed
            return
        closing = asyncio.get_running_loop().create_task(response.aclose())
        self._detached.add(closing)
        closing.add_done_callback(self._detached.discard)

    def _usage_chunk(
        self,
        call: Call,
        chunk: dict[str, Any],
        upstream_usage: dict[str, Any],
        outcome: Outcome,
        price: int,
    ) -> bytes | None:
        if call.wants_usage:
            placeholder = _cost_placeholder()
            chunk["usage"] = _usage_for_client(upstream_usage, outcome, placeholder)
            return b"data: " + _with_cost(orjson.dumps(chunk), placeholder, price) + b"\n\n"
        if chunk.get("choices"):
            del chunk["usage"]
            return b"data: " + orjson.dumps(chunk) + b"\n\n"
        return None  # the usage-only chunk the client did not ask for

    # ---------------------------------------------------------------------------- settlement

    async def _finish(self, call: Call, outcome: Outcome) -> int:
        # Marked before the await: if the request is cancelled while the settlement runs in its
        # thread, the thread still completes it, and no other path may settle again.
        call.settle_started = True
        store = call.store or self.store()
        return await store.workers.run(self._finish_sync, call, outcome)

    def _finish_sync(self, connection: Any, call: Call, outcome: Outcome) -> int:
        """Settle (or void) the hold and write the usage record; returns the price charged."""
        route = call.route
        price = cost_micros(call.model.price, outcome.usage) if outcome.billable else 0
        upstream_cost = cost_micros(route.cost, outcome.usage) if route and outcome.billable else 0
        record = UsageEntry(
            id=call.request_id,
            customer_id=call.key.customer_id,
            api_key_id=call.key.key_id,
            endpoint=call.endpoint,
            public_model=call.model.name,
            provider=route.provider_name if route else "",
            upstream_model=route.upstream_model if route else "",
            stream=call.stream,
            http_status=outcome.http_status,
            status=outcome.status,
            prompt_tokens=outcome.usage.prompt_tokens,
            completion_tokens=outcome.usage.completion_tokens,
            cached_tokens=outcome.usage.cached_tokens,
            reasoning_tokens=outcome.usage.reasoning_tokens,
            disputed_completion_tokens=outcome.disputed_completion_tokens,
            usage_source=outcome.usage_source if outcome.billable else "none",
            upstream_cost_micros=upstream_cost,
            latency_ms=_ms_since(call.started),
            ttfb_ms=call.ttfb_ms,
            attempts=len(call.attempts),
            attempts_json=json.dumps([a.__dict__ for a in call.attempts]),
        )
        touch = self._should_touch(call.key.key_id)
        try:
            return self._settle_in_transaction(connection, call, outcome, record, price, touch)
        except Exception:
            # Whatever went wrong, the hold is resolved and the request recorded: a settlement
            # that fails must not leave the credit held until expiry, nor the request unseen.
            log.exception("settling %s failed; voiding its hold", call.request_id)
            self._void_after_failed_settlement(call, record)
            raise _SettlementFailed() from None
        finally:
            self._forget_capped_hold(call)

    def _void_after_failed_settlement(self, call: Call, record: UsageEntry) -> None:
        store = call.store or self.store()
        record.status = "settlement_failed"
        record.usage_source = "none"
        record.upstream_cost_micros = 0
        record.unbilled_micros = 0
        try:
            with db.session_scope(engine=store.engine) as session:
                metering.cancel(
                    session, hold_id=call.hold_id, account_id=call.key.account_id, record=record
                )
        except Exception:
            # The database is away, or the hold was resolved meanwhile: its expiry is the last
            # resort for the credit, and the log line above names the request.
            log.exception("could not void the hold of %s", call.request_id)

    def _settle_in_transaction(
        self,
        connection: Any,
        call: Call,
        outcome: Outcome,
        record: UsageEntry,
        price: int,
        touch: bool,
    ) -> int:
        store = call.store or self.store()
        if outcome.billable and call.hold is not None:
            stored = store.hot.settle(
                connection, hold=call.hold, price_micros=price, record=record, touch_key=touch
            )
            if stored is not None:
                return stored.price_micros
        # Voids, prices above the hold, holds that expired meanwhile: the ledger's own path.
        with db.session_scope(engine=store.engine) as session:
            if outcome.billable:
                stored = metering.settle(
                    session,
                    hold_id=call.hold_id,
                    account_id=call.key.account_id,
                    price_micros=price,
                    record=record,
                    touch_key=touch,
                    # A capped key is charged at most its hold, which the cap check admitted.
                    overage=call.key.monthly_spend_cap_micros is None,
                )
            else:
                stored = metering.cancel(
                    session, hold_id=call.hold_id, account_id=call.key.account_id, record=record
                )
            return stored.price_micros

    def _void_quietly(self, connection: Any, call: Call) -> None:
        """Release the hold of a request that failed inside the gateway itself."""
        if call.settle_started:
            return
        call.settle_started = True
        try:
            self._finish_sync(connection, call, _failed(500))
        except Exception:
            # Already settled, or the database is away: the hold's expiry is the last resort.
            log.warning("could not void the hold of %s", call.request_id, exc_info=True)

    def _should_touch(self, key_id: str) -> bool:
        now = time.monotonic()
        if now - self._key_touched.get(key_id, 0.0) < KEY_TOUCH_INTERVAL_S:
            return False
        self._key_touched[key_id] = now
        return True


class MeteredStream(StreamingResponse):
    """A streamed answer whose hold is settled even if the client leaves before it starts.

    If the client disconnects before the first chunk, Starlette may never start the relay
    generator, so its finally block would never run; this wrapper voids the hold instead.
    """

    def __init__(self, gateway: Gateway, call: Call, upstream: ResponseLike) -> None:
        super().__init__(
            gateway._relay(call, upstream),
            media_type="text/event-stream",
            # x-accel-buffering: a buffering proxy in front (nginx) passes each event on at
            # once instead of collecting the answer first.
            headers={
                "x-request-id": call.request_id,
                "cache-control": "no-cache",
                "x-accel-buffering": "no",
            },
        )
        self._gateway = gateway
        self._call = call
        self._upstream = upstream

    async def _stream_until_disconnect(self, receive: Any, send: Any) -> None:
        """Send the answer while a plain task listens for the client leaving.

        What Starlette's StreamingResponse does with an anyio task group (two tasks and a
        cancel scope per answer, about 0.3 ms of CPU per stream here), with one task: on
        http.disconnect the listener cancels this task, whose cancellation is then absorbed
        here, and the relay is closed at once so its finally block settles what was produced.
        Any other cancellation (server shutdown) is passed on.
        """
        streaming = asyncio.current_task()
        assert streaming is not None
        gone = False

        async def listen() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            streaming.cancel()

        listener = asyncio.get_running_loop().create_task(listen())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            # Closed now in every case (a disconnect or a shutdown), not whenever the garbage
            # collector gets to it: its finally block settles what was produced.
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
            if not gone or streaming.uncancel() > 0:
                raise
        finally:
            listener.cancel()

    async def stream_response(self, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        ended = False
        async for chunk in self.body_iterator:
            # The relay marks its last piece, which then ends the body in the same write
            # (uvicorn writes every body message at once: one write less per stream).
            ended = isinstance(chunk, _LastChunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self._stream_until_disconnect(receive, send)
        finally:
            if not self._call.relay_started:
                call = self._call
                self._gateway.detach(call, self._gateway._void_quietly, call)
                self._gateway._release(call, self._upstream)


# ------------------------------------------------------------------------------------ helpers


class _LastChunk(bytes):
    """The last piece of a relayed stream."""


class _StreamProblem(Exception):
    pass


class _MalformedStream(_StreamProblem):
    pass


class _UpstreamStreamError(_StreamProblem):
    pass


class _StreamIncomplete(_StreamProblem):
    """The upstream closed the stream without its end marker."""


class _SettlementFailed(_StreamProblem):
    """Settling failed; the hold was voided and the request recorded as settlement_failed."""


class _SSELines:
    """Splits an event stream into `data:` payloads across network reads."""

    def __init__(self) -> None:
        self._rest = b""
        self.done = False

    def feed(self, block: bytes) -> list[bytes]:
        data = self._rest + block
        *complete, self._rest = data.split(b"\n")
        if len(self._rest) > MAX_SSE_LINE_BYTES:
            raise _MalformedStream()
        return [line[5:].strip() for line in complete if line.startswith(b"data:")]


def _parse_chunk(payload: bytes) -> dict[str, Any]:
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise _MalformedStream() from None
    if not isinstance(chunk, dict):
        raise _MalformedStream()
    if "error" in chunk:
        raise _UpstreamStreamError()
    return chunk


def _produced_text(payloads: list[bytes]) -> str:
    """The text the relayed chunks carried (parsed again only when an estimate is needed)."""
    return "".join(tokens.choices_text(orjson.loads(p)) for p in payloads)


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
    call: Call, target: PinnedURL, headers: dict[str, str], content: bytes, timeout_s: float
) -> httpx.Request:
    extensions: dict[str, Any] = {
        "timeout": {"connect": min(CONNECT_TIMEOUT_S, timeout_s), "read": timeout_s,
                    "write": timeout_s, "pool": timeout_s},
    }  # fmt: skip
    if target.tls_server_name:
        extensions["sni_hostname"] = target.tls_server_name
    return httpx.Request(
        "POST",
        target.base_url + ENDPOINT_PATHS[call.endpoint],
        content=content,
        headers=headers,
        extensions=extensions,
    )


def _failure_kind(status: int) -> str | None:
    """How an upstream status counts for fallback: None (use it), 429, 5xx, or route (the
    route is misconfigured: 401/403/404 mean our key or model name, 3xx is never followed)."""
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    if status in (401, 403, 404) or 300 <= status < 400:
        return "route"
    return None


def _failed(http_status: int) -> Outcome:
    return Outcome("upstream_error", http_status, TokenUsage(), "none", billable=False)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _attempt(route: RouteTarget, outcome: str, status: int | None, begun: float) -> Attempt:
    return Attempt(route.provider_name, route.upstream_model, outcome, status, _ms_since(begun))


def _upstream_headers(route: RouteTarget) -> dict[str, str]:
    headers = {**route.extra_headers, "content-type": "application/json"}
    if route.api_key:
        headers["authorization"] = f"Bearer {route.api_key}"
    return headers


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise errors.bad_request("The request body is not valid JSON.", "invalid_json") from None
    if not isinstance(parsed, dict):
        raise errors.bad_request("The request body must be a JSON object.", "invalid_json")
    return parsed


OUTPUT_CAP_FIELDS = ("max_completion_tokens", "max_tokens")


def _max_output(endpoint: str, body: dict[str, Any], model: ModelEntry) -> int:
    """The output one choice may produce, and the one cap the upstream is told.

    The smaller of max_completion_tokens and max_tokens, clamped to the model's limit (the
    limit itself when the client gave neither), is what the hold covers. The body then carries
    exactly that cap in exactly one field: max_completion_tokens when a chat client used that
    name (OpenAI's current one, which reasoning models require), else max_tokens. Forwarding
    both would let an upstream that reads the larger one produce output nobody holds for.
    """
    if endpoint == "embeddings":
        return 0
    asked: int | None = None
    for name in OUTPUT_CAP_FIELDS:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise errors.bad_request(f"'{name}' must be a positive integer.")
        asked = value if asked is None else min(asked, value)
    cap = model.max_output_tokens if asked is None else min(asked, model.max_output_tokens)
    modern = endpoint == "chat" and body.get("max_completion_tokens") is not None
    for name in OUTPUT_CAP_FIELDS:
        body.pop(name, None)
    body["max_completion_tokens" if modern else "max_tokens"] = cap
    return cap


def _media_parts(endpoint: str, body: dict[str, Any], model: ModelEntry) -> int:
    """How many image and file parts the request's input carries, checked against the model.

    An image costs a model up to thousands of tokens whatever the size of its URL, so each part
    is held as model.media_part_tokens on top of the byte estimate. A file referenced only by an
    id has no size the gateway can see: its cost cannot be bounded before it runs, so the
    request is refused rather than run unbounded.
    """
    count = 0
    for part in tokens.media_parts(endpoint, body):
        if part.get("type") in ("file", "input_file") and not tokens.has_inline_data(part):
            raise errors.bad_request(
                "File parts must carry their data inline (file_data); a file referenced by id "
                "cannot be priced before it runs.",
                "unsupported_file_reference",
            )
        count += 1
    if count > model.max_media_parts:
        what = (
            "no image or file input"
            if not model.max_media_parts
            else (f"at most {model.max_media_parts} image or file parts per request")
        )
        raise errors.bad_request(
            f"The model '{model.name}' takes {what}; this request has {count}.",
            "too_many_media_parts",
        )
    return count


def _output_multiplier(endpoint: str, body: dict[str, Any]) -> int:
    """How many completions one request asks for: n, best_of and a list of prompts multiply."""
    total = 1
    for name in ("n", "best_of") if endpoint == "completions" else ("n",):
        value = body.get(name, 1)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_CHOICES:
            raise errors.bad_request(f"'{name}' must be an integer from 1 to {MAX_CHOICES}.")
        total *= value
    prompt = body.get("prompt")
    if endpoint == "completions" and isinstance(prompt, list) and prompt:
        if all(isinstance(p, int) for p in prompt):
            return total  # one prompt given as token ids
        if len(prompt) > MAX_CHOICES:
            raise errors.bad_request(f"At most {MAX_CHOICES} prompts per request.")
        total *= len(prompt)
    return total


def _usage_of(call: Call, usage: Any, produced_text: Callable[[], str]) -> tuple[TokenUsage, str]:
    """The upstream's usage when it gave a valid one, else an estimate (marked) that is never
    zero. The produced text is only assembled when an estimate is needed."""
    if isinstance(usage, dict):
        parsed = _parse_usage(usage)
        if parsed is not None:
            return parsed, "provider"
    prompt = tokens.prompt_tokens(call.endpoint, call.body)
    completion = tokens.text_tokens(produced_text())
    return TokenUsage(prompt_tokens=prompt, completion_tokens=completion), "estimated"


def _outcome(
    call: Call, status: str, http_status: int, usage: TokenUsage, source: str, billable: bool
) -> Outcome:
    """How a request ended, with its output bounded by the cap the upstream was sent.

    The upstream was told it may write call.output_cap tokens at most, and the hold covers no
    more. A count above it (a provider bug, or a provider that ignores the cap) is charged at
    the cap; the excess is recorded on the usage record as disputed. An estimate above it is
    our own over-count of the text, and is clamped without a dispute.
    """
    cap = call.output_cap
    disputed = 0
    if usage.completion_tokens > cap:
        disputed = usage.completion_tokens - cap if source == "provider" else 0
        usage = TokenUsage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=cap,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=min(usage.reasoning_tokens, cap),
        )
    return Outcome(status, http_status, usage, source, billable, disputed)


# No request uses a billion tokens; a count beyond it is invalid usage (the estimate applies),
# and keeps every price product far inside 64-bit micros.
MAX_USAGE_TOKENS = 10**9


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_USAGE_TOKENS:
        return value
    return None


def _parse_usage(usage: dict[str, Any]) -> TokenUsage | None:
    prompt = _count(usage.get("prompt_tokens", usage.get("input_tokens")))
    completion = _count(usage.get("completion_tokens", usage.get("output_tokens", 0)))
    if prompt is None or completion is None:
        return None
    prompt_details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    completion_details = (
        usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
    )
    cached = _detail(prompt_details, "cached_tokens")
    reasoning = _detail(completion_details, "reasoning_tokens")
    if cached is None or reasoning is None:
        return None
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=min(cached, prompt),
        reasoning_tokens=reasoning,
    )


def _detail(details: Any, name: str) -> int | None:
    """A count inside a details object: 0 when absent or null, None when present but invalid."""
    value = details.get(name) if isinstance(details, dict) else None
    return 0 if value is None else _count(value)


def _usage_for_client(upstream: Any, outcome: Outcome, placeholder: str) -> dict[str, Any]:
    """The usage object the client sees: the upstream's, with the counts that were charged
    where they differ (an estimate, or output beyond the cap), and the cost."""
    shown = dict(upstream) if isinstance(upstream, dict) else {}
    usage = outcome.usage
    if outcome.usage_source == "estimated" or outcome.disputed_completion_tokens:
        shown.update(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.prompt_tokens + usage.completion_tokens,
        )
    if outcome.usage_source == "estimated":
        shown["estimated"] = True
    shown["cost"] = placeholder
    return shown


def _cost_placeholder() -> str:
    # Stands in for usage.cost while serializing and is then replaced by the exact decimal
    # text, so the number is written from integer micros without passing through a float.
    # Random per response, so no text the model wrote can collide with it.
    return "__creditdash_cost_" + secrets.token_hex(16) + "__"


def _with_cost(serialized: bytes, placeholder: str, price_micros: int) -> bytes:
    quoted = b'"' + placeholder.encode() + b'"'
    return serialized.replace(quoted, format_credits(price_micros).encode(), 1)
