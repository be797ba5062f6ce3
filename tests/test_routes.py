"""Where sign-in may send the browser: the known pages and an invitation, nothing else."""

from __future__ import annotations

import pytest

from creditdash.routes import handoff_url, invite_page, safe_next

TOKEN = "abcdefghijklmnopqrstuvwxyz_-0123456789"


def test_invitation_pages_are_allowed() -> None:
    assert invite_page(TOKEN) == f"/invite?token={TOKEN}"
    assert safe_next(f"/invite?token={TOKEN}") == f"/invite?token={TOKEN}"
    assert handoff_url("c0de", f"/invite?token={TOKEN}").endswith(f"next=/invite%3Ftoken%3D{TOKEN}")
    assert safe_next("/home") == "/home"


@pytest.mark.parametrize(
    "page",
    [
        "//evil.example.com",
        "https://evil.example.com/invite?token=" + TOKEN,
        f"/invite?token={TOKEN}&next=//evil.example.com",
        "/invite?token=short",
        f"/invite?token={TOKEN}/../admin",
        "/invite",
        "/team?x=1",
    ],
)
def test_anything_else_goes_home(page: str) -> None:
    assert safe_next(page) == "/"
    assert invite_page(page) == "/"
