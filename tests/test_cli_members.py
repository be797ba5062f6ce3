"""`creditdash members`: invite (prints the link), list, role, remove, as the operator."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from creditdash.accounts import invites
from creditdash.cli import main
from creditdash.core import db
from creditdash.core.outbox import OutboxMail
from tests.factories import signed_up


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def members_of(customer_id: str) -> dict[str, str]:
    listed = run("members", "list", "--customer", customer_id, "--json")
    assert listed.exit_code == 0, listed.output
    return {m["email"]: m["role"] for m in json.loads(listed.output)["members"]}


def test_invite_list_role_remove(sqlite_engine: Engine) -> None:
    _owner, cid = signed_up()
    out = run(
        "members",
        "invite",
        "--customer",
        cid,
        "--email",
        "Mate@Example.com",
        "--role",
        "billing",
        "--json",
    )
    assert out.exit_code == 0, out.output
    invited = json.loads(out.output)
    assert invited["email"] == "mate@example.com" and "/invite?token=" in invited["link"]
    token = invited["link"].split("token=")[1]
    with db.session_scope() as session:
        queued = session.execute(select(func.count()).select_from(OutboxMail)).scalar_one()
        assert queued == 1
        invites.accept_invite_as_new_user(session, token=token, password="a-long-password-1")
    assert members_of(cid) == {"founder@example.com": "owner", "mate@example.com": "billing"}
    changed = run(
        "members", "role", "--customer", cid, "--email", "mate@example.com", "--role", "owner"
    )
    assert changed.exit_code == 0 and "billing -> owner" in changed.output
    # The operator bypasses roles, never the last-owner rule.
    run("members", "remove", "--customer", cid, "--email", "founder@example.com")
    last = CliRunner().invoke(
        main,
        ["members", "role", "--customer", cid, "--email", "mate@example.com", "--role", "viewer"],
    )
    assert last.exit_code == 1 and "at least one owner" in last.output
    assert members_of(cid) == {"mate@example.com": "owner"}


def test_refusals_are_one_line_and_change_nothing(sqlite_engine: Engine) -> None:
    _owner, cid = signed_up()
    for args in (
        ["members", "invite", "--customer", cid, "--email", "not-an-email", "--role", "viewer"],
        [
            "members",
            "invite",
            "--customer",
            "cus_nope",
            "--email",
            "a@example.com",
            "--role",
            "viewer",
        ],
        ["members", "remove", "--customer", cid, "--email", "nobody@example.com"],
        ["members", "remove", "--customer", cid, "--email", "founder@example.com"],
    ):
        refused = CliRunner().invoke(main, args)
        assert refused.exit_code == 1, (args, refused.output)
        assert refused.output.startswith("error: ") and refused.output.count("\n") == 1
    assert members_of(cid) == {"founder@example.com": "owner"}
