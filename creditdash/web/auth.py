"""The session cookie, set and cleared by plain HTTP responses so that it can be HttpOnly.

Dashboard events arrive over a websocket, whose handlers cannot set cookies; Reflex's own
rx.Cookie is written by script, so script could also read it. Instead, after a sign-in the page
navigates to /auth/session with a single-use handoff code; this response sets the cookie
(HttpOnly, SameSite=Strict, Secure when the public URL is https) and sends the browser on. The
dashboard's state reads the cookie from the websocket handshake's Cookie header, server side.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from creditdash.accounts import sessions
from creditdash.core import db
from creditdash.core.settings import get_settings
from creditdash.routes import SESSION_PATH, SIGN_OUT_PATH, safe_next


def cookie_is_secure() -> bool:
    """Secure whenever customers reach the dashboard over https (a plain-http localhost
    development setup could not keep a Secure cookie)."""
    return get_settings().resolved_public_url().lower().startswith("https://")


def _take(code: str) -> str | None:
    with db.session_scope() as session:
        return sessions.take_handoff(session, code)


def _end(token: str) -> None:
    with db.session_scope() as session:
        sessions.end_session(session, token)


def _redirect(to: str) -> RedirectResponse:
    response = RedirectResponse(to, status_code=303)
    response.headers["cache-control"] = "no-store"
    response.headers["referrer-policy"] = "no-referrer"
    return response


def session_cookie_routes() -> list[Route]:
    async def take(request: Request) -> Response:
        # Only our own page navigates here. Another site sending a visitor here with its own
        # code would sign the visitor in as someone else (login CSRF); browsers say so.
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return _redirect("/")
        next_page = request.query_params.get("next", "/")
        token = await asyncio.to_thread(_take, request.query_params.get("code", ""))
        if token is None:
            return _redirect("/")
        response = _redirect(safe_next(next_page))
        response.set_cookie(
            sessions.SESSION_COOKIE,
            token,
            max_age=get_settings().session_ttl_s,
            path="/",
            secure=cookie_is_secure(),
            httponly=True,
            samesite="strict",
        )
        return response

    async def sign_out(request: Request) -> Response:
        token = request.cookies.get(sessions.SESSION_COOKIE)
        if token:
            await asyncio.to_thread(_end, token)
        response = _redirect("/")
        response.delete_cookie(
            sessions.SESSION_COOKIE,
            path="/",
            secure=cookie_is_secure(),
            httponly=True,
            samesite="strict",
        )
        return response

    return [
        Route(SESSION_PATH, take, methods=["GET"]),
        Route(SIGN_OUT_PATH, sign_out, methods=["GET"]),
    ]
