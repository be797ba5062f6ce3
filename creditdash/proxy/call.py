"""The in-flight request as a value: what is known about it, how each attempt went, how it ended.

Nothing here touches the database, the network or the gateway: every other part of the request
path (request, routing, forwarding, settlement, streaming) reads and fills in one `Call`, so
they can be tested with a hand-built one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from creditdash.catalog.prices import TokenUsage
from creditdash.proxy.auth import KeyInfo
from creditdash.proxy.snapshot import ModelEntry, RouteTarget


@dataclass(frozen=True)
class NativeRequest:
    """The client's request in its own API, for a route that speaks that API (wires/base.py).

    endpoint: the API ("responses", "messages"), matched against UpstreamWire.native_endpoints.
    body: the client's body, its output cap already clamped as the hold assumed.
    view: view(call, response) wraps the upstream's native answer in the chat view the core
    meters, keeping the native payloads there for the client's wire to render.
    cap_field: the body's output cap in that API ("max_output_tokens", "max_tokens"); the
    upstream wire writes there the cap the hold covers (the chat body's, clamped).
    """

    endpoint: str
    body: dict[str, Any]
    view: Callable[[Call, Any], Any]
    cap_field: str = "max_tokens"


@dataclass
class Attempt:
    provider: str
    upstream_model: str
    # ok | http_error | timeout | connect_error | refused (the URL check) | unsupported (the
    # route's wire cannot serve the call's API)
    outcome: str
    status: int | None
    latency_ms: int


@dataclass
class Call:
    """Everything known about one request while it is in flight (its money is in Settlement)."""

    request_id: str
    # The core's (hub) endpoint: chat, completions or embeddings. The client's own API is
    # wire.name when the client spoke another one (wires/).
    endpoint: str
    key: KeyInfo
    model: ModelEntry
    body: dict[str, Any]
    stream: bool
    wants_usage: bool
    started: float
    deadline: float
    # The output the upstream was allowed over all choices: max_tokens times n (and best_of,
    # and prompts). Reported output beyond it is not charged (see usage.bounded_outcome).
    output_cap: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    route: RouteTarget | None = None
    ttfb_ms: int | None = None
    # How the client is answered: a wires.base.ClientWire (typed as Any here, since the wires
    # import this module); None is OpenAI's wire as is. And the client's own request, when a
    # route can take it natively.
    wire: Any = None
    native: NativeRequest | None = None
    # The API the answering route was sent (chat, messages, responses, ...).
    upstream_endpoint: str = ""
    # The message of the last attempt's answer when it was a 200 that is only an error
    # (whole_answers.py), passed on (redacted) if no route is left.
    upstream_error: str | None = None
    # The Retry-After of the last attempt answered 429 (as the upstream gave it), passed on to
    # the client when that attempt was the last one (gateway.exhausted_error).
    upstream_retry_after: str | None = None

    @property
    def client_endpoint(self) -> str:
        """The API the client called, as its usage record names it."""
        name = getattr(self.wire, "name", "")
        return name if isinstance(name, str) and name else self.endpoint


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


def failed(http_status: int) -> Outcome:
    """An ending that charges nothing: the hold is voided and the request recorded."""
    return Outcome("upstream_error", http_status, TokenUsage(), "none", billable=False)


def client_left() -> Outcome:
    """The client left before any response byte, and the upstream attempt was cancelled:
    nothing is charged (the upstream may still bill the operator for the prompt)."""
    return Outcome("client_disconnected", 499, TokenUsage(), "none", billable=False)


def ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
