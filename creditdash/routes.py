"""Paths of the dashboard that code outside the page registry builds links to.

One place for them, so the states, the session cookie's routes and the pages agree.
"""

from __future__ import annotations

CHANGE_PASSWORD_PATH = "/change-password"  # noqa: S105 (a path)
SESSION_PATH = "/auth/session"
FORGOT_PASSWORD_PATH = "/forgot-password"  # noqa: S105 (a path)
RESET_PASSWORD_PATH = "/reset-password"  # noqa: S105 (a path)
# Sign-in after a reset, with its notice (a fixed flag: nothing from the URL is shown).
RESET_DONE_PATH = "/?reset=done"
SIGN_OUT_PATH = "/auth/sign-out"
WEBHOOKS_PATH = "/webhooks"
# Where a sign-in handoff may send the browser: never an address from the query string as such.
NEXT_PAGES = frozenset({"/", "/home", "/admin", CHANGE_PASSWORD_PATH})


def handoff_url(code: str, next_page: str) -> str:
    """The link that trades a sign-in's single-use code for the session cookie."""
    return f"{SESSION_PATH}?code={code}&next={next_page if next_page in NEXT_PAGES else '/'}"
