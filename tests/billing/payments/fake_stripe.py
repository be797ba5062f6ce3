"""A small fake of Stripe's API on loopback, for the real `stripe` library to talk to.

It parses the library's form-encoded requests (nested keys like metadata[order_id]), honours
Idempotency-Key like Stripe (same key, same answer), records every request, and can be told
to refuse refunds. Only the endpoints creditdash calls are here.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_KEY = "sk_test_fake_0123456789abcdefghijklmnop"


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    authorization: str | None


def unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """a[b][0][c]=1 -> {"a": {"b": {"0": {"c": "1"}}}} (lists stay dicts keyed by index)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


@dataclass
class FakeStripe:
    port: int
    calls: list[Call] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    refuse_refunds: bool = False
    # Answer refunds with this HTTP status (e.g. 500) after performing them: an unclear outcome.
    refund_then_fail_with: int | None = None
    _replies: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def reset(self) -> None:
        self.calls.clear()
        self.sessions.clear()
        self.refunds.clear()
        self._replies.clear()
        self.refuse_refunds = False
        self.refund_then_fail_with = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/checkout/sessions", self._create_session, methods=["POST"]),
                Route("/v1/refunds", self._create_refund, methods=["POST"]),
            ]
        )

    async def _record(self, request: Request) -> tuple[Call, JSONResponse | None]:
        body = (await request.body()).decode()
        call = Call(
            method=request.method,
            path=request.url.path,
            params=unflatten(parse_qsl(body, keep_blank_values=True)),
            idempotency_key=request.headers.get("idempotency-key"),
            authorization=request.headers.get("authorization"),
        )
        self.calls.append(call)
        if call.authorization != f"Bearer {API_KEY}":
            error = {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}
            return call, JSONResponse(error, status_code=401)
        replay = self._replies.get(f"{call.path}:{call.idempotency_key}")
        if call.idempotency_key and replay is not None:
            return call, JSONResponse(replay[1], status_code=replay[0])
        return call, None

    def _remember(self, call: Call, status: int, payload: dict[str, Any]) -> JSONResponse:
        if call.idempotency_key:
            self._replies[f"{call.path}:{call.idempotency_key}"] = (status, payload)
        return JSONResponse(payload, status_code=status)

    async def _create_session(self, request: Request) -> Response:
        call, early = await self._record(request)
        if early is not None:
            return early
        params = call.params
        line = params["line_items"]["0"]
        amount = int(line["price_data"]["unit_amount"]) * int(line["quantity"])
        session_id = "cs_test_" + secrets.token_hex(12)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "url": f"https://checkout.invalid/pay/{session_id}",
            "amount_total": amount,
            "currency": line["price_data"]["currency"],
            "metadata": params.get("metadata", {}),
            "client_reference_id": params.get("client_reference_id"),
            "payment_status": "unpaid",
            "status": "open",
            "mode": params.get("mode"),
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "expires_at": int(params.get("expires_at") or time.time() + 3600),
            "payment_intent": None,
        }
        self.sessions[session_id] = session
        return self._remember(call, 200, session)

    async def _create_refund(self, request: Request) -> Response:
        call, early = await self._record(request)
        if early is not None:
            return early
        if self.refuse_refunds:
            error = {
                "error": {
                    "type": "invalid_request_error",
                    "code": "charge_already_refunded",
                    "message": "This charge cannot be refunded.",
                }
            }
            return self._remember(call, 400, error)
        refund = {
            "id": "re_" + secrets.token_hex(12),
            "object": "refund",
            "amount": int(call.params["amount"]),
            "payment_intent": call.params["payment_intent"],
            "status": "succeeded",
            "metadata": call.params.get("metadata", {}),
        }
        self.refunds[refund["id"]] = refund
        if self.refund_then_fail_with is not None:
            error = {"error": {"type": "api_error", "message": "Something went wrong."}}
            return JSONResponse(error, status_code=self.refund_then_fail_with)
        return self._remember(call, 200, refund)
