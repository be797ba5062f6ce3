"""`creditdash mail`: the email outbox (what waits, what was sent, what failed) and a send."""

from __future__ import annotations

import json

import click

from creditdash.cli.common import in_transaction, raise_refusal_exit, refusals
from creditdash.core.outbox import MAIL_STATUSES
from creditdash.notify import mail


@click.group("mail")
def group() -> None:
    """Outgoing email: the outbox and the SMTP sender."""


@group.command("outbox")
@click.option("--status", type=click.Choice(MAIL_STATUSES), default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def mail_outbox(status: str | None, limit: int, as_json: bool) -> None:
    """The outbox, newest first."""
    rows = in_transaction(
        lambda s: [mail.describe(r) for r in mail.outbox(s, status=status, limit=limit)],
        readonly=True,
    )
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        error = f"  ({row['last_error']})" if row["last_error"] else ""
        click.echo(
            f"{row['id']:>6} {row['status']:<8} {row['attempts']:>2}x {str(row['created_at'])[:16]}"
            f"  {row['to']}  {row['subject']}{error}"
        )


@group.command("send-now")
def mail_send_now() -> None:
    """One pass of the sender over the due mail (the jobs loop does this on its own)."""
    if not mail.is_configured():
        raise_refusal_exit(f"{mail.NOT_CONFIGURED} The mail waits in the outbox.")
    with refusals():
        # A malformed URL is said here, not only in the log.
        mail.check_configuration()
        sent = mail.send_due_mail()
    click.echo(f"sent {sent} email{'s' if sent != 1 else ''}")
