"""Downloads: a customer gets their own invoices and statements, an admin any, others a 404
that holds none of the data; the CLI lists and writes the same documents."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
from click.testing import CliRunner
from sqlalchemy import select

from creditdash.accounts import sessions
from creditdash.accounts.models import Membership
from creditdash.accounts.users import create_user
from creditdash.cli import main
from creditdash.core import db
from creditdash.core.timeutil import utcnow
from tests.billing.shop import Shop, session_event
from tests.factories import funded_customer

INVOICE_KEYS = {
    "number",
    "order_id",
    "kind",
    "issued_at",
    "net",
    "tax",
    "gross",
    "currency",
    "tax_scheme",
}


def _cookie_for_customer(customer_id: str) -> dict[str, str]:
    with db.session_scope() as session:
        user_id = session.execute(
            select(Membership.user_id).where(Membership.customer_id == customer_id)
        ).scalar_one()
        token = sessions.start_session(session, user_id=user_id, ttl=timedelta(hours=1))
    return {"creditdash_session": token}


def _cookie_for_user(user_id: int) -> dict[str, str]:
    with db.session_scope() as session:
        return {
            "creditdash_session": sessions.start_session(
                session, user_id=user_id, ttl=timedelta(hours=1)
            )
        }


def _paid_invoice_number(shop: Shop) -> str:
    order = shop.order("Starter")
    shop.post_event(session_event(order))
    listed = json.loads(
        CliRunner()
        .invoke(main, ["invoices", "list", "--customer", shop.customer_id, "--json"])
        .output
    )
    assert set(listed[0]) >= INVOICE_KEYS
    return str(listed[0]["number"])


def test_invoice_pdf_is_only_for_its_customer_and_admins(shop: Shop) -> None:
    number = _paid_invoice_number(shop)
    url = f"{shop.base_url}/billing/invoices/{number}.pdf"
    own = httpx.get(url, cookies=_cookie_for_customer(shop.customer_id))
    assert own.status_code == 200 and own.content.startswith(b"%PDF")
    assert own.headers["content-type"] == "application/pdf"
    other = funded_customer(shop.engine, credits_micros=0, name="Other")
    foreign = httpx.get(url, cookies=_cookie_for_customer(other.customer_id))
    # The answer is the same as for a number that does not exist: nothing about the invoice.
    assert foreign.status_code == 404 and foreign.json() == {"error": f"no invoice {number!r}"}
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, cookies={"creditdash_session": "forged"}).status_code == 401
    assert shop.checker.user_id is not None
    admin = httpx.get(url, cookies=_cookie_for_user(shop.checker.user_id))
    assert admin.status_code == 200 and admin.content == own.content


def _member_cookie(customer_id: str, role: str) -> dict[str, str]:
    with db.session_scope() as session:
        user = create_user(session, email=f"{role}@docs.example.com", password="a-long-password-1")
        assert user.id is not None
        session.add(Membership(customer_id=customer_id, user_id=user.id, role=role))
        user_id = user.id
    return _cookie_for_user(user_id)


def test_documents_follow_the_members_role(shop: Shop) -> None:
    number = _paid_invoice_number(shop)
    invoice = f"{shop.base_url}/billing/invoices/{number}.pdf"
    statement = f"{shop.base_url}/billing/statement.csv"
    today = utcnow().date().isoformat()
    params = {"customer": shop.customer_id, "from": today, "to": today}
    billing = _member_cookie(shop.customer_id, "billing")
    developer = _member_cookie(shop.customer_id, "developer")
    assert httpx.get(invoice, cookies=billing).status_code == 200
    assert httpx.get(statement, params=params, cookies=billing).status_code == 200
    # A developer sees the workspace's usage, not its invoices or its ledger.
    assert httpx.get(invoice, cookies=developer).status_code == 404
    assert httpx.get(statement, params=params, cookies=developer).status_code == 404
    usage = httpx.get(statement, params={**params, "kind": "requests"}, cookies=developer)
    assert usage.status_code == 200 and usage.text.startswith("date,request_id")


def test_statement_download_is_only_for_its_customer(shop: Shop) -> None:
    _paid_invoice_number(shop)
    today = utcnow().date().isoformat()
    url = f"{shop.base_url}/billing/statement.csv"
    params = {"customer": shop.customer_id, "from": today, "to": today}
    own = httpx.get(url, params=params, cookies=_cookie_for_customer(shop.customer_id))
    assert own.status_code == 200 and own.text.startswith("date,type,reference")
    assert "topup" in own.text
    other = funded_customer(shop.engine, credits_micros=0, name="Other")
    foreign = httpx.get(url, params=params, cookies=_cookie_for_customer(other.customer_id))
    assert foreign.status_code == 404 and "topup" not in foreign.text
    requests = httpx.get(
        url, params={**params, "kind": "requests"}, cookies=_cookie_for_customer(shop.customer_id)
    )
    assert requests.status_code == 200 and requests.text.startswith("date,request_id")
    bad = httpx.get(
        url, params={**params, "from": "nope"}, cookies=_cookie_for_customer(shop.customer_id)
    )
    assert bad.status_code == 400 and "date like" in bad.json()["error"]


def test_cli_profile_and_invoice_pdf(shop: Shop, tmp_path: Path) -> None:
    refused = CliRunner().invoke(
        main,
        [
            "customers",
            "profile",
            shop.customer_id,
            "--legal-name",
            "Acme",
            "--country",
            "DE",
            "--business",
            "--tax-id",
            "DE000000000",
        ],
    )
    assert refused.exit_code == 1 and "not a valid DE VAT ID" in refused.output
    saved = CliRunner().invoke(
        main,
        [
            "customers",
            "profile",
            shop.customer_id,
            "--legal-name",
            "Acme SAS",
            "--country",
            "FR",
            "--business",
            "--tax-id",
            "FR40303265045",
            "--json",
        ],
    )
    assert saved.exit_code == 0 and json.loads(saved.output)["tax_id_valid"] is True
    number = _paid_invoice_number(shop)
    listed = json.loads(CliRunner().invoke(main, ["invoices", "list", "--json"]).output)
    assert listed[0]["tax_scheme"] == "reverse_charge" and listed[0]["tax"] == "0.00"
    out = tmp_path / "invoice.pdf"
    wrote = CliRunner().invoke(main, ["invoices", "pdf", number, "--out", str(out)])
    assert wrote.exit_code == 0 and out.read_bytes().startswith(b"%PDF")
    missing = CliRunner().invoke(main, ["invoices", "pdf", "CD-1999-000001", "--out", str(out)])
    assert missing.exit_code == 1 and "no invoice" in missing.output


def test_request_log_across_customers_is_for_admins_only(shop: Shop) -> None:
    today = utcnow().date().isoformat()
    url = f"{shop.base_url}/admin/requests.csv"
    params = {"from": today, "to": today}
    customer = httpx.get(url, params=params, cookies=_cookie_for_customer(shop.customer_id))
    assert customer.status_code == 404 and "date" not in customer.text
    assert shop.checker.user_id is not None
    admin = httpx.get(url, params=params, cookies=_cookie_for_user(shop.checker.user_id))
    assert admin.status_code == 200 and admin.text.startswith("date,request_id")


BAD_DAYS = [
    "2026-01-01%0d%0aX-Evil:%201",
    "2026-01-01%0d%0a",
    "%0d%0a2026-01-01",
    "2026-01-01%0a",
    "%202026-01-01",
    "2026-01-01%20",
    "2026-1-1",
    "%D9%A2026-01-01",
    "nope",
    "",
]


def test_downloads_refuse_bad_dates_with_400_and_never_echo_them_into_headers(shop: Shop) -> None:
    """CR/LF (or anything but YYYY-MM-DD) in from/to is a 400, not a broken response."""
    assert shop.checker.user_id is not None
    customer = _cookie_for_customer(shop.customer_id)
    admin = _cookie_for_user(shop.checker.user_id)
    base = f"{shop.base_url}/billing/statement.csv?customer={shop.customer_id}"
    for bad in BAD_DAYS:
        for url, cookies in (
            (f"{base}&from={bad}&to=2026-01-02", customer),
            (f"{base}&from=2026-01-01&to={bad}&kind=requests", customer),
            (f"{shop.base_url}/admin/requests.csv?from={bad}&to=2026-01-02", admin),
        ):
            answer = httpx.get(url, cookies=cookies)
            assert answer.status_code == 400, (url, answer.status_code)
            assert "date like" in answer.json()["error"]
            assert "x-evil" not in answer.headers
            assert "content-disposition" not in answer.headers
    backwards = httpx.get(f"{base}&from=2026-01-02&to=2026-01-01", cookies=customer)
    assert backwards.status_code == 400 and "ends before" in backwards.json()["error"]
    too_long = httpx.get(f"{base}&from=2024-01-01&to=2026-01-01", cookies=customer)
    assert too_long.status_code == 400 and "at most" in too_long.json()["error"]
    good = httpx.get(f"{base}&from=2026-01-01&to=2026-01-31", cookies=customer)
    assert good.status_code == 200
    assert good.headers["content-disposition"] == (
        'attachment; filename="statement-2026-01-01-2026-01-31.csv"'
    )


def test_invoice_pdf_refuses_control_characters_in_the_number(shop: Shop) -> None:
    number = _paid_invoice_number(shop)
    cookies = _cookie_for_customer(shop.customer_id)
    for bad in (f"{number}%0d%0aX-Evil:%201", f"{number}%0d%0a", f"%0a{number}"):
        answer = httpx.get(f"{shop.base_url}/billing/invoices/{bad}.pdf", cookies=cookies)
        assert answer.status_code == 400, bad
        assert "x-evil" not in answer.headers and "content-disposition" not in answer.headers
    good = httpx.get(f"{shop.base_url}/billing/invoices/{number}.pdf", cookies=cookies)
    assert good.headers["content-disposition"] == f'attachment; filename="{number}.pdf"'
