"""What every command group shares: how refusals reach the terminal, the transaction, output.

They live apart from __init__.py, which registers the groups, so that a group module imports
them without importing the package that imports it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import Session

from creditdash.core import db
from creditdash.core.errors import CreditdashError, ValidationFailed
from creditdash.core.settings import get_settings

T = TypeVar("T")


@contextmanager
def refusals() -> Iterator[None]:
    """Turn domain errors into one clear line on stderr and a non-zero exit."""
    try:
        yield
    except CreditdashError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    except (OperationalError, ProgrammingError) as exc:
        if unreachable_database(exc) is not None:
            raise  # the entry point says so (cli/__init__.py): a reason, not "not migrated"
        if "no such table" in str(exc) or "does not exist" in str(exc):
            click.echo("error: the database is not migrated; run `creditdash db upgrade`", err=True)
            sys.exit(1)
        raise


def in_transaction(work: Callable[[Session], T], *, readonly: bool = False) -> T:
    """Run work in one transaction; a refusal rolls it back and becomes an `error:` line."""
    with refusals(), db.session_scope(readonly=readonly) as session:
        return work(session)


def emit(payload: dict[str, Any], as_json: bool, text: str) -> None:
    """One result, as JSON for scripts or as text for people."""
    click.echo(json.dumps(payload) if as_json else text)


def raise_refusal_exit(message: str) -> NoReturn:
    """Refuse outside a transaction: the `error:` line and exit status 1 at once."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def raise_refusal(message: str) -> NoReturn:
    """Refuse inside a transaction: raised, so in_transaction rolls back before it is shown."""
    raise ValidationFailed(message)


# What the drivers say when no connection could be made at all (psycopg 3, sqlite3), and how
# the one line names it. Errors of a working connection (a lock timeout, a failed statement)
# are not among them.
_UNREACHABLE = (
    ("unable to open database file", "cannot open the database file; does its folder exist?"),
    ("connection refused", "connection refused"),
    ("failed to resolve host", "unknown host"),
    ("could not translate host name", "unknown host"),
    ("timeout expired", "timed out"),
    ("password authentication failed", "password authentication failed"),
    ("no password supplied", "no password given"),
    ("does not exist", "no such database"),
    ("connection failed", "cannot connect"),
    ("server closed the connection", "the server closed the connection"),
)


def unreachable_database(exc: BaseException) -> str | None:
    """The one line for a database that cannot be reached, or None for any other error. The
    URL is shown without its password."""
    reason = _unreachable_reason(exc)
    if reason is None:
        return None
    return (
        f"cannot reach the database at {shown_database_url()} ({reason}); "
        "check CREDITDASH_DATABASE_URL"
    )


def _unreachable_reason(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OperationalError) or type(seen).__name__ == "OperationalError":
            message = str(getattr(seen, "orig", None) or seen)
            lowered = message.lower()
            connecting = "connection failed" in lowered or "resolve host" in lowered
            for needle, reason in _UNREACHABLE:
                # "does not exist" only counts while connecting (a missing table is not it).
                if needle in lowered and (needle != "does not exist" or connecting):
                    return reason
        seen = seen.__cause__ or seen.__context__
    return None


def shown_database_url() -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(get_settings().database_url).render_as_string(hide_password=True)
    except Exception:  # a setting refused, or a URL that does not parse: say which variable
        return "CREDITDASH_DATABASE_URL"
