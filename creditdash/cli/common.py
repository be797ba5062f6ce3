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
