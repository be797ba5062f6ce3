"""Where sign-in may send the browser: the known pages and an invitation, nothing else."""

from __future__ import annotations

import pytest

from creditdash.routes import checkout_page, handoff_url, invite_page, safe_next, sign_up_page

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
        "/billing?package=Growth&next=//evil.example.com",
        "/billing?package=%2F%2Fevil.example.com",
        "/billing?package=",
    ],
)
def test_anything_else_goes_home(page: str) -> None:
    assert safe_next(page) == "/"
    assert invite_page(page) == "/"


def test_sign_up_carries_a_package_name_to_its_checkout() -> None:
    assert sign_up_page("Growth") == "/signup?package=Growth"
    assert checkout_page("Growth") == "/billing?package=Growth"
    assert safe_next("/billing?package=Growth") == "/billing?package=Growth"
    assert safe_next(checkout_page("Big Pack")) == "/billing?package=Big%20Pack"
    # Not a package name: sign-up without one, and home after it.
    assert sign_up_page("//evil.example.com") == "/signup"
    assert checkout_page("a&next=/x") == "/home"
