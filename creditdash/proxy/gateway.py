"""A metered, proxied request, from key to settlement (docs/design.md, "A proxied request").

1. Authenticate the key (cached briefly). 2. Resolve the public model and its routes.
3. Hold the worst case; too little credit is a 402 before anything goes upstream.
4. Try routes in priority order; connect errors, timeouts, 429 and 5xx before the first byte
   fall through to the next route. 5. Meter from the upstream's usage (asking for it on
   streams), or from a marked estimate when there is none. 6. Post the hold at the actual price
   and write the usage record in one transaction; the customer sees usage.cost and a request id.

This module only composes the steps: reading the body is request.py, the route order routing.py,
the attempts forwarding.py, the hold and its one settlement settlement.py, a streamed answer
streaming.py, and turning usage into charged counts usage.py. Clients and upstreams of other
APIs are adapters at the edges (wires/): serve() takes a chat body a client wire translated,
and forwarding asks each route's upstream wire how to call it. Database work runs in worker
threads in short transactions; the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from creditdash.catalog.prices import worst_case_micros
from creditdash.core import db
from creditdash.core.ids import new_id
from creditdash.core.money import format_credits
from creditdash.core.settings import HOLD_MARGIN_S, Settings, get_settings
from creditdash.proxy import errors, tokens
from creditdash.proxy.auth import KeyCache, KeyInfo
from creditdash.proxy.call import Call, NativeRequest, client_left, failed, ms_since
from creditdash.proxy.credit_refusal import HoldTerms
from creditdash.proxy.disconnect import DisconnectWatch
from creditdash.proxy.forwarding import Forwarder
from creditdash.proxy.idempotency import HEADER as IDEMPOTENCY_KEY
from creditdash.proxy.idempotency import Idempotency, Ticket, fingerprint, parse_key
from creditdash.proxy.limits_redis import key_limits
from creditdash.proxy.request import (
    max_output,
    media_part_count,
    model_name,
    output_multiplier,
    parse_object,
    read_limited,
    stream_flags,
)
from creditdash.proxy.request_metrics import record_limited
from creditdash.proxy.routing import RoutePlanner
from creditdash.proxy.settlement import (
    DetachedTasks,
    KeyTouches,
    Ledgers,
    MeteringStore,
    Settlement,
    SettlementFailed,
)
from creditdash.proxy.snapshot import CatalogCache, ModelEntry, RouteTarget
from creditdash.proxy.streaming import MeteredStream
from creditdash.proxy.upstream import ResponseLike, UpstreamPool, UpstreamResponse
from creditdash.proxy.usage import bounded_outcome, usage_of
from creditdash.proxy.wires.base import OPENAI, ClientWire


class Gateway:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.keys = KeyCache()
        self.catalog = CatalogCache()
        self.limiter = key_limits(self.settings)
        self.routes = RoutePlanner()
        self.upstream = Forwarder(self.settings, self.routes)
        self._tasks = DetachedTasks()
        self._store: MeteringStore | None = None
        self._store_lock = threading.Lock()
        self.hold_ttl = timedelta(seconds=self.settings.hold_ttl_s)
        # A request (all attempts, a whole stream) ends before its hold can expire; settings
        # refuse a hold lifetime that leaves less than 30 s (settings.MIN_HOLD_TTL_S).
        self.request_budget_s = float(self.settings.hold_ttl_s - HOLD_MARGIN_S)
        self._ledgers = Ledgers(self.hold_ttl, KeyTouches(), self._tasks)
        self.idempotency = Idempotency(self._tasks, self.hold_ttl)

    # ------------------------------------------------------------------------------ plumbing

    def client(self) -> httpx.AsyncClient:
        return self.upstream.client()

    def pool(self) -> UpstreamPool:
        return self.upstream.pool()

    async def aclose(self) -> None:
        await self._tasks.drain()
        await self.upstream.aclose()
        await self.limiter.aclose()
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

    async def authenticate(self, request: Request, *, api_key_header: bool = False) -> KeyInfo:
        """The caller's key, from `Authorization: Bearer`; with api_key_header (the Anthropic
        paths) an `x-api-key` header is taken first."""
        api_key = request.headers.get("x-api-key") if api_key_header else None
        if api_key is not None:
            key = await self.keys.authenticate_key(api_key)
        else:
            key = await self.keys.authenticate(request.headers.get("authorization"))
        if key is None:
            raise errors.unauthorized()
        return key

    # ------------------------------------------------------------------------------- request

    async def handle(self, request: Request, endpoint: str) -> Response:
        """An OpenAI-wire request (chat, completions, embeddings), answered as it is."""
        started = time.perf_counter()
        key = await self.authenticate(request)
        body_bytes = await read_limited(request, self.settings.max_body_bytes)
        body = parse_object(body_bytes)
        return await self.serve(key, endpoint, body, body_bytes, started, request=request)

    async def serve(
        self,
        key: KeyInfo,
        endpoint: str,
        body: dict[str, Any],
        body_bytes: bytes,
        started: float,
        wire: ClientWire = OPENAI,
        native: NativeRequest | None = None,
        request: Request | None = None,
    ) -> Response:
        """Meter and answer one request in the core's protocol: body is a chat, completions or
        embeddings body (a client wire translated it when the client spoke another API, and
        passes its own request as native for routes that speak it); body_bytes is what the
        client sent, which bounds the prompt's size for the hold. Refusals before anything ran
        raise GatewayError, which the caller renders in its client's shape.

        With the client's request: its Idempotency-Key is honoured (idempotency.py), and
        without one a client that leaves before any response byte cancels the upstream."""
        header = request.headers.get(IDEMPOTENCY_KEY) if request is not None else None
        if header is None or request is None:
            return await self._serve(key, endpoint, body, body_bytes, started, wire, native,
                                     request, None)  # fmt: skip
        idempotency_key = parse_key(header)
        request_id = new_id("req")

        async def run(ticket: Ticket) -> Response:
            return await self._serve(key, endpoint, body, body_bytes, started, wire, native,
                                     None, ticket)  # fmt: skip

        return await self.idempotency.serve(
            request, key.customer_id, idempotency_key,
            fingerprint(wire.name or endpoint, body_bytes), request_id,
            self.request_budget_s - (time.perf_counter() - started), run,
        )  # fmt: skip

    async def _serve(
        self,
        key: KeyInfo,
        endpoint: str,
        body: dict[str, Any],
        body_bytes: bytes,
        started: float,
        wire: ClientWire,
        native: NativeRequest | None,
        request: Request | None,
        ticket: Ticket | None,
    ) -> Response:
        name = model_name(body)
        snapshot = await self.catalog.get()
        model = snapshot.models.get(name)
        if model is None or not model.routes or not key.may_use(name):
            raise errors.model_not_found(name)
        refused = await self.limiter.admit(key.key_id, key.rpm_limit, key.concurrency_limit)
        if refused is not None and refused.rate:
            record_limited(name, "rate_limit_exceeded")
            raise errors.rate_limited(
                f"Rate limit reached: {key.rpm_limit} requests per minute.",
                "rate_limit_exceeded",
                refused.retry_after_s,
            )
        if refused is not None:
            record_limited(name, "concurrency_limit_exceeded")
            raise errors.rate_limited(
                f"Too many concurrent requests: the limit is {key.concurrency_limit}.",
                "concurrency_limit_exceeded",
                errors.CONCURRENCY_RETRY_AFTER_S,
            )
        handed_over = False
        try:
            call = self._new_call(endpoint, key, model, body, started, wire)
            call.native = native
            if ticket is not None:
                call.request_id = ticket.request_id
            settlement = await self._reserve(call, body_bytes)
            if ticket is not None:
                ticket.settlement = settlement
            watch = DisconnectWatch(request.receive) if request is not None else None
            try:
                response = await self._forward(settlement)
            except asyncio.CancelledError:
                if watch is None or not watch.absorbed():
                    settlement.void_detached()
                    raise
                # The client left before any response byte: the attempt was cancelled (its
                # connection closed), nothing is charged.
                settlement.void_detached(client_left())
                return _wire(call).error_response(_client_left_error(), call.request_id)
            except BaseException:
                # A failure inside the gateway: the hold is released unless an ending that
                # already claimed the request (a settlement under way) resolves it.
                settlement.void_detached()
                raise
            finally:
                if watch is not None:
                    watch.stop()
            # A stream gives the key's slot back itself, when it ends (streaming.py).
            handed_over = isinstance(response, StreamingResponse)
            return response
        finally:
            if not handed_over:
                self.limiter.leave(key.key_id)

    def _new_call(
        self,
        endpoint: str,
        key: KeyInfo,
        model: ModelEntry,
        body: dict[str, Any],
        started: float,
        wire: ClientWire,
    ) -> Call:
        stream, wants_usage = stream_flags(endpoint, body)
        return Call(
            request_id=new_id("req"),
            endpoint=endpoint,
            key=key,
            model=model,
            body=body,
            stream=stream,
            wants_usage=wants_usage or wire.wants_usage,
            started=started,
            deadline=started + self.request_budget_s,
            wire=wire,
        )

    async def _reserve(self, call: Call, body_bytes: bytes) -> Settlement:
        """The output cap (written into the body), the worst case, and the hold placed for it."""
        per_choice = max_output(call.endpoint, call.body, call.model)
        multiplier = output_multiplier(call.endpoint, call.body)
        call.output_cap = per_choice * multiplier
        media = media_part_count(call.endpoint, call.body, call.model)
        prompt_tokens = tokens.hold_prompt_tokens(body_bytes) + media * call.model.media_part_tokens
        amount = worst_case_micros(
            call.model.price, prompt_tokens=prompt_tokens, max_output_tokens=call.output_cap
        )
        settlement = Settlement(call, self.store(), self._ledgers)
        # The terms only explain a refusal (its max_tokens that would fit).
        await settlement.reserve(
            amount, HoldTerms(call.model.price, prompt_tokens, multiplier, per_choice)
        )
        return settlement

    # ------------------------------------------------------------------------------ upstream

    async def _forward(self, settlement: Settlement) -> Response:
        call = settlement.call
        opened = await self.upstream.open(call)
        if opened is None:
            error = exhausted_error(call)
            await settlement.finish(failed(error.status))
            return _wire(call).error_response(error, call.request_id)
        response, route = opened
        call.route = route
        if response.status_code >= 400:
            return await self._pass_through_error(settlement, response, route)
        if call.stream:
            release = functools.partial(self._release, call.key.key_id, response)
            return MeteredStream(settlement, response, release)
        return await self._complete(settlement, response)

    async def _pass_through_error(
        self, settlement: Settlement, response: ResponseLike, route: RouteTarget
    ) -> Response:
        """An upstream 4xx caused by the request: its status and (redacted) body, no charge."""
        try:
            raw = await response.aread()
        except httpx.HTTPError:
            raw = errors.error_body("The upstream rejected the request.", "upstream_error", None)
        finally:
            await response.aclose()
        await settlement.finish(failed(response.status_code))
        return _wire(settlement.call).upstream_error(
            response.status_code,
            errors.redact(raw, (route.api_key, *route.extra_headers.values())),
            settlement.call.request_id,
        )

    async def _complete(self, settlement: Settlement, response: ResponseLike) -> Response:
        """A whole (non-streamed) answer: metered first, then delivered with its cost."""
        call = settlement.call
        try:
            raw = await response.aread()
        except httpx.TimeoutException:
            await settlement.finish(failed(504))
            return _wire(call).error_response(errors.upstream_timeout(), call.request_id)
        except httpx.HTTPError:
            await settlement.finish(failed(502))
            return _wire(call).error_response(errors.upstream_failed(), call.request_id)
        finally:
            await response.aclose()
        call.ttfb_ms = ms_since(call.started)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            await settlement.finish(failed(502))
            return _wire(call).error_response(errors.upstream_failed(), call.request_id)
        usage, source = usage_of(call, data.get("usage"), lambda: tokens.choices_text(data))
        outcome = bounded_outcome(call, "ok", 200, usage, source, billable=True)
        try:
            price = await settlement.finish(outcome)
        except SettlementFailed:
            # Not metered, so not delivered: the hold is voided and the request recorded.
            return _wire(call).error_response(errors.metering_failed(), call.request_id)
        return Response(
            _wire(call).render_complete(call, data, outcome, price),
            media_type="application/json",
            headers=charged_headers(call.request_id, price, settlement.balance_after_micros),
        )

    def _release(self, key_id: str, response: ResponseLike) -> None:
        """Give back the key's concurrency slot and close the upstream, without awaiting."""
        self.limiter.leave(key_id)
        if isinstance(response, UpstreamResponse):
            response.close()  # nothing to await: back to the pool, or closed
            return
        self._tasks.spawn(response.aclose())


def _client_left_error() -> errors.GatewayError:
    return errors.GatewayError(
        499, "The client closed the request.", "invalid_request_error", "client_disconnected"
    )


def _redacted(message: str | None, call: Call) -> str | None:
    """An upstream's error message without any route's secrets (or anything key-shaped)."""
    if message is None:
        return None
    secrets = [s for r in call.model.routes for s in (r.api_key, *r.extra_headers.values())]
    return errors.redact_text(message, tuple(secrets))


def charged_headers(request_id: str, price: int, balance_after: int | None) -> dict[str, str]:
    """A settled answer's headers: its id, the credits charged and the balance left after."""
    headers = {"x-request-id": request_id, "x-credits-charged": format_credits(price)}
    if balance_after is not None:
        headers["x-credits-remaining"] = format_credits(balance_after)
    return headers


def exhausted_error(call: Call) -> errors.GatewayError:
    """The answer when no route gave a usable answer, from how the attempts went: the last
    one decides (a timeout 504, a 429 the provider's rate limit, anything else 502), unless no
    route could serve the call's API at all (400)."""
    if call.attempts and all(a.outcome == "unsupported" for a in call.attempts):
        # No route speaks an API that can serve this call: the request is at fault.
        return errors.unsupported_endpoint(call.model.name, call.client_endpoint)
    last = call.attempts[-1] if call.attempts else None
    if last is not None and last.outcome == "timeout":
        return errors.upstream_timeout()
    if last is not None and last.status == 429:
        return errors.upstream_rate_limited(call.upstream_retry_after)
    return errors.upstream_failed(_redacted(call.upstream_error, call))


def _wire(call: Call) -> ClientWire:
    return call.wire if isinstance(call.wire, ClientWire) else OPENAI
