"""`Idempotency-Key` on the metered POSTs, as Stripe has it: per customer, the first request
with a key runs and its answer is kept 24 h; a retry with the same key and body gets that
answer again (`idempotent-replayed: true`), charged nothing more.

- Same key, other body or endpoint: 422 `idempotency_key_reused`, nothing run.
- Same key while the first is in flight: the retry polls the row (the row is the lock, across
  processes) up to the request's budget, then replays; 409 `idempotency_request_in_progress`
  when the budget runs out first. A client that leaves while waiting stops the wait.
- An ending that charged nothing (a refusal, an upstream failure with the hold voided)
  releases the key: the row is deleted and a retry runs fresh. Only charged answers are kept.
- An answer over CAPTURE_LIMIT bytes, or a stream the client left before its end, is kept as
  done without a body: a replay is 409 `idempotency_result_unavailable`, never a second run.
- The claimed request runs as a detached task (DetachedTasks): a client that leaves does not
  stop it; it is charged once and stored, for the SDK's retry with the same key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from creditdash.proxy import errors
from creditdash.proxy import idempotency_keys as keys
from creditdash.proxy.disconnect import ClientGone
from creditdash.proxy.settlement import DetachedTasks, Settlement

log = logging.getLogger(__name__)

HEADER = "idempotency-key"
MAX_KEY_CHARS = 255
CAPTURE_LIMIT = 8 * 1024 * 1024
POLL_S = 0.15
SETTLED_POLL_S = 0.02
REPLAYED = {"idempotent-replayed": "true"}


def parse_key(value: str) -> str:
    """1-255 printable ASCII characters, else a 400."""
    if not 0 < len(value) <= MAX_KEY_CHARS or not all(" " <= c <= "~" for c in value):
        raise errors.bad_request(
            "'Idempotency-Key' must be 1-255 printable ASCII characters.",
            "invalid_idempotency_key",
        )
    return value


def fingerprint(endpoint: str, body: bytes) -> str:
    """sha256 over the endpoint and the raw body bytes."""
    digest = hashlib.sha256(endpoint.encode())
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def key_reused() -> errors.GatewayError:
    return errors.GatewayError(
        422, "This Idempotency-Key was already used with another request body or endpoint.",
        "invalid_request_error", "idempotency_key_reused",
    )  # fmt: skip


def result_unavailable() -> errors.GatewayError:
    return errors.GatewayError(
        409, "The request with this Idempotency-Key ran and was charged, but its answer was not "
        "kept (too large, or a stream left before its end).", "invalid_request_error",
        "idempotency_result_unavailable",
    )  # fmt: skip


def in_progress() -> errors.GatewayError:
    return errors.GatewayError(
        409, "A request with this Idempotency-Key is still in progress; retry later.",
        "invalid_request_error", "idempotency_request_in_progress",
    )  # fmt: skip


def keep_answer(billed: bool | None) -> bool:
    """Only an answer that was charged is kept for replay; anything else releases the key."""
    return billed is True


def replay(row: keys.Row) -> Response:
    """The stored answer, with its original request id."""
    if row.body is None:
        raise result_unavailable()
    headers = {"x-request-id": row.request_id, **REPLAYED}
    if row.content_type.startswith("text/event-stream"):
        headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
        return StreamingResponse(
            iter([row.body]), status_code=row.status or 200, media_type="text/event-stream",
            headers=headers,
        )  # fmt: skip
    return Response(row.body, status_code=row.status or 200, headers=headers,
                    media_type=row.content_type or None)  # fmt: skip


@dataclass
class Ticket:
    """What the idempotent run learns from the gateway: the request's settlement."""

    request_id: str
    settlement: Settlement | None = None


Run = Callable[[Ticket], Awaitable[Response]]


class Idempotency:
    def __init__(self, tasks: DetachedTasks, abandoned_after: timedelta) -> None:
        self._tasks = tasks
        self._abandoned_after = abandoned_after

    async def serve(
        self,
        request: Request,
        customer_id: str,
        key: str,
        fp: str,
        request_id: str,
        budget_s: float,
        run: Run,
    ) -> Response:
        deadline = time.perf_counter() + budget_s
        gone: ClientGone | None = None
        try:
            while True:
                row = await asyncio.to_thread(
                    keys.claim, customer_id=customer_id, key=key, body_sha256=fp,
                    request_id=request_id, abandoned_after=self._abandoned_after,
                )  # fmt: skip
                if row is None:
                    if gone is not None:
                        gone.stop()
                        gone = None
                    ticket = Ticket(request_id)
                    task = self._tasks.spawn(self._run(customer_id, key, ticket, run))
                    return await asyncio.shield(task)
                if row.body_sha256 != fp:
                    raise key_reused()
                if row.state == keys.DONE:
                    return replay(row)
                # In flight: wait for it (a released row is claimed afresh on the next turn).
                if gone is None:
                    gone = ClientGone(request.receive)
                while row is not None and row.state == keys.IN_FLIGHT:
                    if time.perf_counter() >= deadline:
                        raise in_progress()
                    if await gone.wait(POLL_S):
                        return Response(status_code=499)  # nobody to answer
                    row = await asyncio.to_thread(keys.load, customer_id=customer_id, key=key)
                if row is not None:
                    if row.body_sha256 != fp:
                        raise key_reused()
                    return replay(row)
        finally:
            if gone is not None:
                gone.stop()

    async def _run(self, customer_id: str, key: str, ticket: Ticket, run: Run) -> Response:
        try:
            response = await run(ticket)
        except BaseException:
            await self._release(customer_id, key, ticket)
            raise
        if isinstance(response, StreamingResponse):

            def conclude(status: int, body: bytes | None) -> None:
                self._conclude_stream(customer_id, key, ticket, status, body)

            return _Captured(response, conclude)
        billed = await _settled(ticket)
        if keep_answer(billed):
            body = bytes(response.body)
            await self._finish(customer_id, key, ticket, response.status_code,
                               response.media_type or "application/json",
                               body if len(body) <= CAPTURE_LIMIT else None)  # fmt: skip
        else:
            await self._release(customer_id, key, ticket)
        return response

    def _conclude_stream(
        self, customer_id: str, key: str, ticket: Ticket, status: int, body: bytes | None
    ) -> None:
        async def conclude() -> None:
            billed = await _settled(ticket)
            if keep_answer(billed):
                await self._finish(customer_id, key, ticket, status, "text/event-stream", body)
            elif billed is False:
                await self._release(customer_id, key, ticket)
            else:  # never settled here: the abandoned-claim rule frees the key later
                log.warning("idempotent stream %s not settled; key kept", ticket.request_id)

        self._tasks.spawn(conclude())

    async def _finish(
        self, customer_id: str, key: str, ticket: Ticket, status: int, ctype: str,
        body: bytes | None,
    ) -> None:  # fmt: skip
        try:
            await asyncio.to_thread(
                keys.finish, customer_id=customer_id, key=key, request_id=ticket.request_id,
                status=status, content_type=ctype, body=body,
            )  # fmt: skip
        except Exception:
            log.exception("could not store the answer of %s", ticket.request_id)

    async def _release(self, customer_id: str, key: str, ticket: Ticket) -> None:
        try:
            await asyncio.to_thread(
                keys.release, customer_id=customer_id, key=key, request_id=ticket.request_id
            )
        except Exception:
            log.exception("could not release the idempotency key of %s", ticket.request_id)


async def _settled(ticket: Ticket, wait_s: float = 60.0) -> bool | None:
    """Whether the request was charged, once its settlement ran (None: no settlement, or it
    did not run within wait_s). A refusal before the hold has no settlement: not charged."""
    settlement = ticket.settlement
    if settlement is None:
        return False
    waited = 0.0
    while settlement.billed is None and waited < wait_s:
        await asyncio.sleep(SETTLED_POLL_S)
        waited += SETTLED_POLL_S
    return settlement.billed


class _Captured(Response):
    """A streamed answer whose bytes are captured as they are sent (up to CAPTURE_LIMIT);
    on its end, conclude(status, body) is called, body None when incomplete or too large."""

    def __init__(
        self, response: StreamingResponse, conclude: Callable[[int, bytes | None], None]
    ) -> None:
        self.response = response
        self.status_code = response.status_code
        self.raw_headers = response.raw_headers
        self._conclude = conclude

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        parts: list[bytes] = []
        size = 0
        complete = False
        status = self.status_code

        async def capture(message: MutableMapping[str, Any]) -> None:
            nonlocal size, complete, status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                size += len(chunk)
                if size <= CAPTURE_LIMIT:
                    parts.append(chunk)
                if not message.get("more_body", False):
                    complete = True
            await send(message)

        try:
            await self.response(scope, receive, capture)
        finally:
            kept = b"".join(parts) if complete and size <= CAPTURE_LIMIT else None
            self._conclude(status, kept)
