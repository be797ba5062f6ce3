"""HTTP for payments: the two webhook endpoints and the sandbox provider's hosted test pages
(checkout, and saving a card for automatic top-ups).

Mounted beside the gateway routes, so the same paths answer on the Reflex app's port and on
`creditdash gateway`. Signatures are checked on the raw body before anything is parsed or
written; the database work runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from creditdash.billing.payments import autotopup, orders, reconcile, refunds
from creditdash.billing.payments.autotopup_models import SavedPaymentMethod
from creditdash.billing.payments.checkout import return_urls
from creditdash.billing.payments.models import PaymentOrder
from creditdash.billing.payments.providers import (
    SANDBOX_CHECKOUT_PATH,
    SANDBOX_SETUP_PATH,
    SANDBOX_TEST_CARDS,
    webhook_secrets,
)
from creditdash.billing.payments.webhooks import (
    MAX_EVENT_BYTES,
    Applied,
    SignatureRejected,
    apply_event,
    verify_event,
)
from creditdash.core import db, metrics
from creditdash.core.errors import ValidationFailed
from creditdash.core.money import format_credits, format_minor
from creditdash.core.settings import Settings, get_settings
from creditdash.routes import AUTOTOPUP_PATH

log = logging.getLogger(__name__)
SANDBOX_WEBHOOK_PATH = "/webhooks/sandbox"


def _apply(provider: str, event: dict[str, Any]) -> Applied:
    with db.session_scope() as session:
        return apply_event(session, provider=provider, event=event)


async def _read_limited(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_EVENT_BYTES (never buffered beyond that)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_EVENT_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_EVENT_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_event(
    provider: str, body: bytes, header: str | None, settings: Settings
) -> Response:
    """Verify, store once and apply one signed event: the webhook endpoints' whole work."""
    try:
        event = verify_event(body, header, webhook_secrets(provider, settings))
    except SignatureRejected as exc:
        metrics.webhook_received(provider, "rejected_signature")
        return JSONResponse({"error": exc.message}, status_code=400)
    # Any failure below rolls the whole transaction back (event row and effect) and answers
    # 500, so the provider delivers the event again later.
    applied = await asyncio.to_thread(_apply, provider, event)
    log.info(
        "%s event %s (%s): %s", provider, applied.event_id, applied.event_type, applied.outcome
    )
    metrics.webhook_received(provider, applied.outcome)
    return JSONResponse(applied.describe())


async def _receive(request: Request, provider: str, settings: Settings) -> Response:
    body = await _read_limited(request)
    if body is None:
        return JSONResponse({"error": "event body too large"}, status_code=413)
    return await receive_event(provider, body, request.headers.get("stripe-signature"), settings)


def payment_routes(settings: Settings | None = None) -> list[Route]:
    def current() -> Settings:
        return settings or get_settings()

    async def stripe_webhook(request: Request) -> Response:
        return await _receive(request, "stripe", current())

    async def sandbox_webhook(request: Request) -> Response:
        return await _receive(request, "sandbox", current())

    async def sandbox_page(request: Request) -> Response:
        if not current().sandbox_enabled:
            return HTMLResponse(_page("Not available", "<p>Test payments are off.</p>"), 404)
        order = await asyncio.to_thread(_sandbox_order, request.path_params["session_id"])
        if order is None:
            return HTMLResponse(_page("Checkout not found", "<p>No such test checkout.</p>"), 404)
        return HTMLResponse(_checkout_page(order, current(), error=""))

    async def sandbox_pay(request: Request) -> Response:
        return await _sandbox_pay(request, current())

    async def sandbox_setup_page(request: Request) -> Response:
        if not current().sandbox_enabled:
            return HTMLResponse(_page("Not available", "<p>Test payments are off.</p>"), 404)
        method = await asyncio.to_thread(
            autotopup.sandbox_setup_method, request.path_params["session_id"]
        )
        if method is None:
            return HTMLResponse(_page("Setup not found", "<p>No such card setup.</p>"), 404)
        return HTMLResponse(_setup_page(method, error=""))

    async def sandbox_setup_save(request: Request) -> Response:
        return await _sandbox_setup_save(request, current())

    return [
        Route("/webhooks/stripe", stripe_webhook, methods=["POST"]),
        Route(SANDBOX_WEBHOOK_PATH, sandbox_webhook, methods=["POST"]),
        Route(SANDBOX_CHECKOUT_PATH + "/{session_id}", sandbox_page, methods=["GET"]),
        Route(SANDBOX_CHECKOUT_PATH + "/{session_id}/pay", sandbox_pay, methods=["POST"]),
        Route(SANDBOX_SETUP_PATH + "/{session_id}", sandbox_setup_page, methods=["GET"]),
        Route(SANDBOX_SETUP_PATH + "/{session_id}/save", sandbox_setup_save, methods=["POST"]),
    ]


# ---------------------------------------------------------------------------- sandbox page


def _sandbox_order(session_id: str) -> PaymentOrder | None:
    from sqlmodel import col, select

    with db.session_scope(readonly=True) as session:
        order = session.exec(
            select(PaymentOrder).where(
                col(PaymentOrder.provider) == "sandbox",
                col(PaymentOrder.checkout_session_id) == session_id,
            )
        ).first()
        if order is not None:
            session.expunge(order)
        return order


def _accept_terms(order_id: str) -> None:
    with db.session_scope() as session:
        orders.accept_terms(session, orders.get_order(session, order_id))


def sandbox_event(order: PaymentOrder, event_type: str = "checkout.session.completed") -> str:
    """A Checkout Session event for the order, shaped like Stripe's (the fields we read)."""
    event = {
        "id": "evt_sandbox_" + secrets.token_urlsafe(18),
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {
            "object": {
                "id": order.checkout_session_id,
                "object": "checkout.session",
                "client_reference_id": order.id,
                "amount_total": order.gross_minor,
                "currency": order.currency.lower(),
                "payment_status": "paid" if event_type.endswith("completed") else "unpaid",
                "status": "complete" if event_type.endswith("completed") else "expired",
                "payment_intent": "pi_sandbox_" + secrets.token_urlsafe(12),
                "metadata": {"order_id": order.id, "customer_id": order.customer_id},
            }
        },
    }
    return json.dumps(event)


async def _sandbox_pay(request: Request, settings: Settings) -> Response:
    if not settings.sandbox_enabled:
        return HTMLResponse(_page("Not available", "<p>Test payments are off.</p>"), 404)
    session_id = request.path_params["session_id"]
    order = await asyncio.to_thread(_sandbox_order, session_id)
    if order is None:
        return HTMLResponse(_page("Checkout not found", "<p>No such test checkout.</p>"), 404)
    form = await request.form()
    if form.get("accept_terms") != "yes":
        page = _checkout_page(order, settings, error="Accept the terms and refund policy to pay.")
        return HTMLResponse(page, 400)
    if order.status != "awaiting_payment":
        return HTMLResponse(_checkout_page(order, settings, error=""), 409)
    await asyncio.to_thread(_accept_terms, order.id)
    # Deliver the payment the way a provider would: an event signed exactly like Stripe's,
    # through the same verification and handler as /webhooks/sandbox. In process, so the
    # delivery goes to this server and nowhere a request header could point it.
    import stripe  # on first use, like everything else of the library

    body = sandbox_event(order)
    # The sandbox's own record that this session is paid, kept whatever the delivery does:
    # `payments reconcile` credits it if the event below is lost.
    await asyncio.to_thread(reconcile.record_sandbox_payment, json.loads(body)["data"]["object"])
    header = stripe.WebhookSignature.generate_signature_header(
        body, settings.resolved_sandbox_webhook_secret()
    )
    answer = await receive_event("sandbox", body.encode(), header, settings)
    if answer.status_code >= 300:
        error = "The test payment could not be delivered; nothing was charged. Try again."
        return HTMLResponse(_checkout_page(order, settings, error=error), 502)
    success_url, _ = return_urls(order, settings)
    # Back on the same origin the page was opened on (its path only): the browser keeps its
    # session cookie even when CREDITDASH_PUBLIC_URL names another host for the same app.
    return RedirectResponse(_path_only(success_url), status_code=303)


async def _sandbox_setup_save(request: Request, settings: Settings) -> Response:
    """The test card page's Save button: the events Stripe would send after a setup-mode
    checkout, signed and delivered in process like the checkout's payment."""
    if not settings.sandbox_enabled:
        return HTMLResponse(_page("Not available", "<p>Test payments are off.</p>"), 404)
    method = await asyncio.to_thread(
        autotopup.sandbox_setup_method, request.path_params["session_id"]
    )
    if method is None:
        return HTMLResponse(_page("Setup not found", "<p>No such card setup.</p>"), 404)
    if method.status != "pending":
        return HTMLResponse(_setup_page(method, error=""), 409)
    form = await request.form()
    if form.get("consent") != "yes":
        return HTMLResponse(_setup_page(method, error="Give your consent to save the card."), 400)
    try:
        bodies = autotopup.sandbox_setup_events(method, str(form.get("card_number") or ""))
    except ValidationFailed as exc:
        return HTMLResponse(_setup_page(method, error=exc.message), 400)
    import stripe

    for body in bodies:
        header = stripe.WebhookSignature.generate_signature_header(
            body, settings.resolved_sandbox_webhook_secret()
        )
        answer = await receive_event("sandbox", body.encode(), header, settings)
        if answer.status_code >= 300:
            error = "The card could not be saved; try again."
            return HTMLResponse(_setup_page(method, error=error), 502)
    back = f"{settings.resolved_public_url()}{AUTOTOPUP_PATH}?setup=done&method={method.id}"
    return RedirectResponse(_path_only(back), status_code=303)


def _setup_page(method: SavedPaymentMethod, *, error: str) -> str:
    e = html.escape
    cards = "".join(
        f'<option value="{e(number)}">{e(number)} ({e(brand)}: {e(behaviour.replace("_", " "))})'
        "</option>"
        for number, (brand, behaviour) in SANDBOX_TEST_CARDS.items()
    )
    if method.status != "pending":
        action = f'<p class="done">This card setup is <b>{e(method.status)}</b>.</p>'
    else:
        action = f"""
<form method="post" action="{e(SANDBOX_SETUP_PATH)}/{e(method.setup_session_id or "")}/save">
  <label>Test card <select name="card_number" id="card-number">{cards}</select></label>
  <label class="terms"><input type="checkbox" name="consent" value="yes" required>
    {e(method.consent_text)}</label>
  <button type="submit">Save card</button>
  <a class="cancel" href="{e(AUTOTOPUP_PATH)}?setup=cancelled">Cancel and return</a>
</form>"""
    error_html = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = f"""
<div class="banner">TEST MODE — sandbox cards move no real money</div>
<main>
  <h1>Save a card for automatic top-ups</h1>
  <p class="muted">Setup {e(method.id)}</p>
  {error_html}
  {action}
</main>"""
    return _page("Save a test card · creditdash", body)


def _path_only(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def _policy_text(settings: Settings) -> str:
    return f"{refunds.policy_text(settings)} Terms version {settings.terms_version}."


def _credits_text(order: PaymentOrder) -> str:
    total = format_credits(order.credits_micros + order.bonus_micros)
    if not order.bonus_micros:
        return total
    return f"{total} (incl. {format_credits(order.bonus_micros)} bonus)"


def _checkout_page(order: PaymentOrder, settings: Settings, *, error: str) -> str:
    e = html.escape
    money = f"{format_minor(order.gross_minor, order.currency)} {order.currency}"
    _, cancel_url = return_urls(order, settings)
    rows = [
        ("Package", f"{order.package_name} x {order.quantity}"),
        ("Credits", _credits_text(order)),
        ("Net", f"{format_minor(order.net_minor, order.currency)} {order.currency}"),
        (
            "Tax",
            f"{format_minor(order.tax_minor, order.currency)} {order.currency} "
            f"({order.tax_scheme})",
        ),
        ("Total", money),
    ]
    table = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    if order.status != "awaiting_payment":
        action = f'<p class="done">This order is <b>{e(order.status)}</b>.</p>'
    else:
        action = f"""
<form method="post" action="{e(SANDBOX_CHECKOUT_PATH)}/{e(order.checkout_session_id or "")}/pay">
  <label class="terms"><input type="checkbox" name="accept_terms" value="yes" required>
    I accept the terms and the refund policy: {e(_policy_text(settings))}</label>
  <button type="submit">Pay {e(money)}</button>
  <a class="cancel" href="{e(cancel_url)}">Cancel and return</a>
</form>"""
    error_html = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = f"""
<div class="banner">TEST MODE — sandbox payments move no real money</div>
<main>
  <h1>Pay for your credits</h1>
  <p class="muted">Order {e(order.id)}</p>
  <table>{table}</table>
  {error_html}
  {action}
</main>"""
    return _page("Test checkout · creditdash", body)


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; background: #f6f6f9; color: #1c1c28; }}
.banner {{ background: #ffb224; color: #3b2300; text-align: center; padding: 10px;
  font-weight: 700; letter-spacing: .04em; }}
main {{ max-width: 480px; margin: 40px auto; background: #fff; border-radius: 12px;
  padding: 28px 32px; box-shadow: 0 2px 12px rgba(0,0,0,.08); }}
h1 {{ font-size: 22px; margin: 0 0 4px; }}
.muted {{ color: #6f6e77; font-size: 13px; margin-top: 0; }}
table {{ width: 100%; border-collapse: collapse; margin: 18px 0; }}
th {{ text-align: left; font-weight: 500; color: #6f6e77; padding: 6px 0; }}
td {{ text-align: right; padding: 6px 0; font-variant-numeric: tabular-nums; }}
tr:last-child td, tr:last-child th {{ font-weight: 700; color: #1c1c28;
  border-top: 1px solid #e4e4e9; padding-top: 10px; }}
.terms {{ display: block; font-size: 14px; margin: 12px 0 18px; line-height: 1.4; }}
button {{ width: 100%; background: #3e63dd; color: #fff; border: 0; border-radius: 8px;
  padding: 12px; font-size: 16px; font-weight: 600; cursor: pointer; }}
.cancel {{ display: block; text-align: center; margin-top: 14px; color: #6f6e77; }}
.error {{ color: #ce2c31; font-weight: 600; }}
</style></head><body>{body}</body></html>"""
