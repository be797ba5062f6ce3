"""The team journey in Chromium: an owner invites a teammate by email as a viewer, the
teammate opens the emailed link, creates their account and joins, then sees no key controls.
(That the server refuses the forced event is tests/state/test_handler_guards.py's.)"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.harness import APP_DB, MAILBOX, shot

pytestmark = pytest.mark.e2e


def invite_link_for(email: str, timeout_s: float = 60) -> str:
    """The link in the invitation email to `email`, as it arrived at the SMTP server the app
    sends to (the app's jobs loop delivers it within its 2 s interval)."""
    message = MAILBOX.wait_for(email, "invited", timeout_s=timeout_s)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    found = re.search(r"https?://\S+/invite\?token=[\w-]+", body.get_content())
    assert found, body.get_content()
    return found.group(0)


def test_invite_a_viewer_who_cannot_create_keys(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    if "url" not in APP_DB:
        pytest.skip(
            "needs the app this run starts (its mail goes to MAILBOX), not CREDITDASH_E2E_URL"
        )
    stamp = int(time.time() * 1000)
    owner, mate = f"owner{stamp}@example.com", f"mate{stamp}@example.com"
    page.goto("/signup")
    page.wait_for_selector("#su-email")
    page.fill("#su-name", "Olga Owner")
    page.fill("#su-workspace", "Team GmbH")
    page.fill("#su-email", owner)
    page.fill("#su-password", "owner-pass-12345")
    page.fill("#su-confirm", "owner-pass-12345")
    page.click("#sign-up")
    page.wait_for_url(re.compile(r".*/home/?$"))

    page.goto("/team")
    page.wait_for_selector("#invite-email")
    page.fill("#invite-email", mate)
    page.click("#invite-role")
    page.get_by_role("option", name="viewer").click()
    page.click("#invite-submit")
    page.wait_for_selector(f"text=Invitation emailed to {mate}")
    shot(page, "team-invited")
    link = invite_link_for(mate)

    # The teammate, in a browser of their own (the owner's cookie is left behind).
    page.context.clear_cookies()
    page.goto(link)
    page.wait_for_selector("#invite-password")
    page.fill("#invite-name", "Max Mate")
    page.fill("#invite-password", "mate-pass-123456")
    page.fill("#invite-confirm", "mate-pass-123456")
    page.click("#invite-create")
    page.wait_for_url(re.compile(r".*/home/?$"))

    page.goto("/keys")
    page.wait_for_selector("text=API keys")
    page.wait_for_timeout(1500)
    assert page.locator("#create-key").count() == 0
    shot(page, "keys-as-viewer")
    # The team page lists both, with no controls for a viewer.
    page.goto("/team")
    page.wait_for_selector(f"text={owner}")
    assert page.locator("#invite-email").count() == 0
