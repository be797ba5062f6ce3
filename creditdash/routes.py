"""Paths of the dashboard that code outside the page registry builds links to.

One place for them, so the states, the session cookie's routes and the pages agree.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

# The sign-in form; the site root is the public landing page.
SIGN_IN_PATH = "/signin"
SIGN_UP_PATH = "/signup"
BILLING_PATH = "/billing"
CHANGE_PASSWORD_PATH = "/change-password"  # noqa: S105 (a path)
SESSION_PATH = "/auth/session"
FORGOT_PASSWORD_PATH = "/forgot-password"  # noqa: S105 (a path)
RESET_PASSWORD_PATH = "/reset-password"  # noqa: S105 (a path)
# Sign-in after a reset, with its notice (a fixed flag: nothing from the URL is shown).
RESET_DONE_PATH = f"{SIGN_IN_PATH}?reset=done"
SIGN_OUT_PATH = "/auth/sign-out"
WEBHOOKS_PATH = "/webhooks"
# Automatic top-ups; the failure emails link here with ?pay=<order id> to pay on-session.
AUTOTOPUP_PATH = "/billing/autotopup"
# Where a sign-in handoff may send the browser: never an address from the query string as such.
NEXT_PAGES = frozenset({"/", "/home", "/admin", CHANGE_PASSWORD_PATH})
# A package name that sign-up may carry on to checkout (anything else: no package).
_PACKAGE_NAME = re.compile(r"[A-Za-z0-9 ._-]{1,80}")
_CHECKOUT_PREFIX = f"{BILLING_PATH}?package="
INVITE_PATH = "/invite"
# An invitation's token as accounts/invites.py makes them (URL-safe base64): the one address
# with a query that sign-in may return to, and only with a token of that alphabet.
_INVITE_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,200}")


def invite_page(token: str) -> str:
    """The invitation page for a token; "/" for anything that is not a token."""
    return f"{INVITE_PATH}?token={token}" if _INVITE_TOKEN.fullmatch(token or "") else "/"


def checkout_page(package: str) -> str:
    """The billing page with a package chosen ("/home" for anything that is not a name)."""
    if not _PACKAGE_NAME.fullmatch(package or ""):
        return "/home"
    return _CHECKOUT_PREFIX + quote(package, safe="")


def sign_up_page(package: str) -> str:
    """Sign-up that carries the chosen package on to its checkout."""
    if not _PACKAGE_NAME.fullmatch(package or ""):
        return SIGN_UP_PATH
    return f"{SIGN_UP_PATH}?package={quote(package, safe='')}"


def safe_next(page: str) -> str:
    """`page` if sign-in may send the browser there, "/" otherwise (no open redirects)."""
    if page in NEXT_PAGES:
        return page
    if page.startswith(_CHECKOUT_PREFIX):
        package = unquote(page[len(_CHECKOUT_PREFIX) :])
        if checkout_page(package) == page:
            return page
    prefix = f"{INVITE_PATH}?token="
    if page.startswith(prefix) and invite_page(page[len(prefix) :]) == page:
        return page
    return "/"


def handoff_url(code: str, next_page: str) -> str:
    """The link that trades a sign-in's single-use code for the session cookie."""
    return f"{SESSION_PATH}?code={code}&next={quote(safe_next(next_page), safe='/')}"
