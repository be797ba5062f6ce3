"""Downloads for signed-in dashboard users: invoice PDFs and CSV statements.

The browser's session cookie (the same one the dashboard uses) identifies the user. A customer
gets their own workspaces' documents; a platform admin gets any. Anything else is a 404 that
says nothing about whether the object exists.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import date, timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from creditdash.accounts import roles, sessions
from creditdash.accounts.customers import customers_of_user
from creditdash.billing.invoicing import invoices, statements
from creditdash.core import db
from creditdash.core.errors import CreditdashError, NotFound, ValidationFailed

SESSION_COOKIE = "creditdash_session"
# Query dates are exactly YYYY-MM-DD in ASCII digits: nothing around them, nothing else.
_DAY = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z", re.ASCII)
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]", re.ASCII)
MAX_NUMBER_CHARS = 64


@dataclass(frozen=True)
class Viewer:
    user_id: int
    is_admin: bool
    # The user's role in each workspace they belong to.
    roles: dict[str, str]

    def may_see(self, customer_id: str, permission: str = "billing.read") -> bool:
        """Platform admins see every document; members those their role allows (invoices and
        the ledger statement need billing.read, the request log only membership)."""
        return self.is_admin or roles.allows(self.roles.get(customer_id), permission)


def _viewer(token: str | None) -> Viewer | None:
    with db.session_scope(readonly=True) as session:
        user = sessions.user_for_token(session, token or "")
        if user is None or user.id is None:
            return None
        member_of = {c.id: role for c, role in customers_of_user(session, user.id)}
        return Viewer(user.id, user.is_platform_admin, member_of)


def query_day(text: str, name: str) -> date:
    """A date from a download's query string, refused (400) unless it is exactly YYYY-MM-DD."""
    if not _DAY.match(text):
        raise ValidationFailed(f"{name} must be a date like 2026-11-28")
    return statements.parse_day(text, name)


def query_period(first: str, last: str) -> statements.Period:
    """The from/to days of a download (both included); bad dates, from after to or a range
    longer than a statement covers are refused before anything is read."""
    return statements.Period.of_days(query_day(first, "from"), query_day(last, "to"))


def check_invoice_number(number: str) -> str:
    """An invoice number from the URL: no control characters (CR/LF), and not absurdly long."""
    if not number or len(number) > MAX_NUMBER_CHARS or not number.isprintable():
        raise ValidationFailed("the invoice number must look like CD-2026-000001")
    return number


def attachment(filename: str) -> str:
    """A Content-Disposition value whose filename holds only letters, digits, dot, dash and
    underscore, whatever it was built from."""
    return f'attachment; filename="{_FILENAME_UNSAFE.sub("_", filename)}"'


def _invoice_pdf(viewer: Viewer, number: str) -> tuple[str, bytes]:
    with db.session_scope(readonly=True) as session:
        issued = invoices.get_by_number(session, number)
        if not viewer.may_see(issued.invoice.customer_id):
            raise NotFound(f"no invoice {number!r}")
        # Imported on first use: fpdf2 and its fonts add about 40 MiB to every gateway worker
        # that never renders a document.
        from creditdash.billing.invoicing import pdf

        return issued.invoice.number, pdf.render_pdf(issued)


def _statement(viewer: Viewer, customer_id: str, period: statements.Period, kind: str) -> str:
    permission = "workspace.read" if kind == "requests" else "billing.read"
    if not viewer.may_see(customer_id, permission):
        raise NotFound("no such statement")
    with db.session_scope(readonly=True) as session:
        if kind == "requests":
            return statements.request_log_csv(session, customer_id=customer_id, period=period)
        if kind != "ledger":
            raise ValidationFailed("kind is ledger or requests")
        rows = statements.statement(session, customer_id=customer_id, period=period)
        return statements.statement_csv(rows)


def _all_requests(customer_id: str | None, period: statements.Period) -> str:
    with db.session_scope(readonly=True) as session:
        return statements.request_log_csv(
            session, customer_id=customer_id, period=period, operator=True
        )


def _refusal(exc: CreditdashError) -> Response:
    status = 404 if isinstance(exc, NotFound) else 400
    return JSONResponse({"error": exc.message}, status_code=status)


def document_routes() -> list[Route]:
    async def invoice_pdf(request: Request) -> Response:
        viewer = await asyncio.to_thread(_viewer, request.cookies.get(SESSION_COOKIE))
        if viewer is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        try:
            number, data = await asyncio.to_thread(
                _invoice_pdf, viewer, check_invoice_number(request.path_params["number"])
            )
        except CreditdashError as exc:
            return _refusal(exc)
        return Response(
            data,
            media_type="application/pdf",
            headers={
                "content-disposition": attachment(f"{number}.pdf"),
                "cache-control": "private, no-store",
            },
        )

    async def statement_csv(request: Request) -> Response:
        viewer = await asyncio.to_thread(_viewer, request.cookies.get(SESSION_COOKIE))
        if viewer is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        query = request.query_params
        kind = query.get("kind", "ledger")
        try:
            period = query_period(query.get("from", ""), query.get("to", ""))
            text = await asyncio.to_thread(
                _statement, viewer, query.get("customer", ""), period, kind
            )
        except CreditdashError as exc:
            return _refusal(exc)
        prefix = "requests" if kind == "requests" else "statement"
        # From the parsed period, never from the query text.
        last_day = (period.end - timedelta(days=1)).date()
        name = f"{prefix}-{period.start.date().isoformat()}-{last_day.isoformat()}.csv"
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={
                "content-disposition": attachment(name),
                "cache-control": "private, no-store",
            },
        )

    async def all_requests_csv(request: Request) -> Response:
        viewer = await asyncio.to_thread(_viewer, request.cookies.get(SESSION_COOKIE))
        if viewer is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        if not viewer.is_admin:
            return JSONResponse({"error": "not found"}, status_code=404)
        query = request.query_params
        try:
            period = query_period(query.get("from", ""), query.get("to", ""))
            text = await asyncio.to_thread(_all_requests, query.get("customer") or None, period)
        except CreditdashError as exc:
            return _refusal(exc)
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={
                "content-disposition": 'attachment; filename="requests.csv"',
                "cache-control": "private, no-store",
            },
        )

    return [
        Route("/billing/invoices/{number}.pdf", invoice_pdf, methods=["GET"]),
        Route("/admin/requests.csv", all_requests_csv, methods=["GET"]),
        Route("/billing/statement.csv", statement_csv, methods=["GET"]),
    ]
