"""A small fake of Stripe's API on loopback, for the real `stripe` library to talk to.

It parses the library's form-encoded requests (nested keys like metadata[order_id]), honours
Idempotency-Key like Stripe (same key, same answer), records every request, and can be told
to refuse refunds. Only the endpoints creditdash calls are here.

For automatic top-ups it also keeps customers, setup-mode Checkout Sessions (complete_setup()
plays the customer entering a test card), payment methods and off-session PaymentIntents
(confirm=true, off_session=true) whose outcome follows the test card: 4242... succeeds,
4000000000000002 is declined (card_declined), 4000002760003184 needs authentication
(authentication_required, status requires_action). What Stripe would send about them is queued
in `outbox` and posted, signed with the endpoint secret, by deliver().
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_KEY = "sk_test_fake_0123456789abcdefghijklmnop"
SUCCESS_CARD = "4242424242424242"
DECLINE_CARD = "4000000000000002"
ACTION_CARD = "4000002760003184"


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
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # pm id -> (card number, payment method object)
    methods: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Events Stripe would send, not yet delivered; and where and how to deliver them.
    outbox: list[dict[str, Any]] = field(default_factory=list)
    webhook_url: str = ""
    webhook_secret: str = ""
    # Pages of GET /v1/checkout/sessions hold at most this many, whatever limit asks (tests
    # of auto-paging set it small).
    page_cap: int = 100

    def reset(self) -> None:
        self.calls.clear()
        self.sessions.clear()
        self.refunds.clear()
        self._replies.clear()
        self.customers.clear()
        self.methods.clear()
        self.intents.clear()
        self.outbox.clear()
        self.refuse_refunds = False
        self.refund_then_fail_with = None
        self.page_cap = 100

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/checkout/sessions", self._create_session, methods=["POST"]),
                Route("/v1/checkout/sessions", self._list_sessions, methods=["GET"]),
                Route("/v1/refunds", self._create_refund, methods=["POST"]),
                Route("/v1/customers", self._create_customer, methods=["POST"]),
                Route("/v1/payment_intents", self._create_intent, methods=["POST"]),
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
        if params.get("mode") == "setup":
            return self._remember(call, 200, self._setup_session(params))
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
            "created": int(time.time()),
        }
        self.sessions[session_id] = session
        return self._remember(call, 200, session)

    # ---------------------------------------------------------------- listing sessions

    def mark_paid(
        self,
        session_id: str,
        *,
        payment_intent: str | None = None,
        amount_total: int | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        """The customer paid on the hosted page, and the webhook never arrives: the session is
        listed as paid, and no event is queued. Returns the session (an event's data.object)."""
        session = self.sessions[session_id]
        session["payment_status"] = "paid"
        session["status"] = "complete"
        session["payment_intent"] = payment_intent or "pi_" + secrets.token_hex(12)
        if amount_total is not None:
            session["amount_total"] = amount_total
        if currency is not None:
            session["currency"] = currency
        return dict(session)

    async def _list_sessions(self, request: Request) -> Response:
        """GET /v1/checkout/sessions as Stripe documents it: newest first, created[gte],
        limit (1-100, default 10), starting_after (an id from the previous page), has_more."""
        params = unflatten(list(request.query_params.multi_items()))
        self.calls.append(
            Call("GET", request.url.path, params, None, request.headers.get("authorization"))
        )
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            error = {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}
            return JSONResponse(error, status_code=401)
        limit = int(params.get("limit", 10))
        if not 1 <= limit <= 100:
            error = {"error": {"type": "invalid_request_error", "message": "Invalid limit"}}
            return JSONResponse(error, status_code=400)
        gte = int(params.get("created", {}).get("gte", 0))
        listed = sorted(
            (s for s in self.sessions.values() if s.get("created", 0) >= gte),
            key=lambda s: (s.get("created", 0), s["id"]),
            reverse=True,
        )
        after = params.get("starting_after")
        if after:
            ids = [s["id"] for s in listed]
            if after not in ids:
                error = {"error": {"type": "invalid_request_error", "message": "No such object"}}
                return JSONResponse(error, status_code=400)
            listed = listed[ids.index(after) + 1 :]
        limit = min(limit, self.page_cap)
        page = listed[:limit]
        return JSONResponse(
            {
                "object": "list",
                "url": "/v1/checkout/sessions",
                "has_more": len(listed) > limit,
                "data": page,
            }
        )

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

    # ------------------------------------------------------------------ automatic top-ups

    def _event(self, event_type: str, obj: dict[str, Any]) -> None:
        self.outbox.append(
            {
                "id": "evt_" + secrets.token_hex(12),
                "object": "event",
                "type": event_type,
                "created": int(time.time()),
                "livemode": False,
                "data": {"object": obj},
            }
        )

    def deliver(self) -> list[httpx.Response]:
        """Post every queued event, signed, to the webhook endpoint, in order."""
        answers = []
        while self.outbox:
            answers.append(self.post(self.outbox.pop(0)))
        return answers

    def post(self, event: dict[str, Any]) -> httpx.Response:
        body = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(body, self.webhook_secret)
        return httpx.post(
            self.webhook_url,
            content=body.encode(),
            headers={"content-type": "application/json", "stripe-signature": header},
        )

    async def _create_customer(self, request: Request) -> Response:
        call, early = await self._record(request)
        if early is not None:
            return early
        customer = {
            "id": "cus_" + secrets.token_hex(8),
            "object": "customer",
            "email": call.params.get("email"),
            "metadata": call.params.get("metadata", {}),
        }
        self.customers[customer["id"]] = customer
        return self._remember(call, 200, customer)

    def _setup_session(self, params: dict[str, Any]) -> dict[str, Any]:
        session_id = "cs_test_" + secrets.token_hex(12)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "url": f"https://checkout.invalid/setup/{session_id}",
            "mode": "setup",
            "customer": params.get("customer"),
            "currency": params.get("currency"),
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata", {}),
            "setup_intent": "seti_" + secrets.token_hex(12),
            "setup_intent_metadata": params.get("setup_intent_data", {}).get("metadata", {}),
            "status": "open",
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "custom_text": params.get("custom_text", {}),
            "created": int(time.time()),
        }
        self.sessions[session_id] = session
        return session

    def complete_setup(self, session_id: str, card_number: str = SUCCESS_CARD) -> str:
        """The customer enters a card on the setup page: the events Stripe sends are queued.
        Returns the new payment method's id."""
        session = self.sessions[session_id]
        assert session["mode"] == "setup" and session["status"] == "open"
        session["status"] = "complete"
        method_id = "pm_" + secrets.token_hex(10)
        brand = "mastercard" if card_number.startswith("5") else "visa"
        method = {
            "id": method_id,
            "object": "payment_method",
            "type": "card",
            "customer": session["customer"],
            "card": {"brand": brand, "last4": card_number[-4:], "exp_month": 4, "exp_year": 2031},
        }
        self.methods[method_id] = (card_number, method)
        self._event("payment_method.attached", method)
        self._event(
            "setup_intent.succeeded",
            {
                "id": session["setup_intent"],
                "object": "setup_intent",
                "status": "succeeded",
                "customer": session["customer"],
                "payment_method": method_id,
                "usage": "off_session",
                "metadata": session["setup_intent_metadata"],
            },
        )
        self._event(
            "checkout.session.completed",
            {
                "id": session_id,
                "object": "checkout.session",
                "mode": "setup",
                "status": "complete",
                "customer": session["customer"],
                "setup_intent": session["setup_intent"],
                "client_reference_id": session["client_reference_id"],
                "metadata": session["metadata"],
            },
        )
        return method_id

    async def _create_intent(self, request: Request) -> Response:
        call, early = await self._record(request)
        if early is not None:
            return early
        params = call.params
        assert params.get("confirm") == "true" and params.get("off_session") == "true"
        method_id = params["payment_method"]
        if method_id not in self.methods:
            error = {"error": {"type": "invalid_request_error", "message": "No such method"}}
            return self._remember(call, 400, error)
        card, method = self.methods[method_id]
        if method["customer"] != params.get("customer"):
            error = {"error": {"type": "invalid_request_error", "message": "Not attached"}}
            return self._remember(call, 400, error)
        intent = {
            "id": "pi_" + secrets.token_hex(12),
            "object": "payment_intent",
            "amount": int(params["amount"]),
            "amount_received": 0,
            "currency": params["currency"],
            "customer": params["customer"],
            "payment_method": method_id,
            "metadata": params.get("metadata", {}),
            "status": "succeeded",
        }
        self.intents[intent["id"]] = intent
        if card == SUCCESS_CARD or card == "5555555555554444":
            intent["amount_received"] = intent["amount"]
            self._event("payment_intent.succeeded", dict(intent))
            return self._remember(call, 200, intent)
        code = "authentication_required" if card == ACTION_CARD else "card_declined"
        intent["status"] = "requires_action" if card == ACTION_CARD else "requires_payment_method"
        message = (
            "This payment requires authentication."
            if card == ACTION_CARD
            else "Your card was declined."
        )
        intent["last_payment_error"] = {"type": "card_error", "code": code, "message": message}
        self._event("payment_intent.payment_failed", dict(intent))
        error = {
            "error": {
                "type": "card_error",
                "code": code,
                "message": message,
                "payment_intent": intent,
            }
        }
        return self._remember(call, 402, error)
