"""Payment reconciliation: checkout sessions the provider says are paid, against our orders.

A webhook can be lost (an endpoint down for longer than the provider retries, a secret rolled
wrongly). `payments reconcile` and the daily job read each provider's paid Checkout Sessions
over a window (Stripe: its list of sessions through the library, every page; the sandbox: its
own record of sessions paid on its page) and, for a paid session whose order is not credited,
settle it through webhooks.settle_paid_session: the same amount check and the same
orders.settle with the same ledger keys as the webhook, so a late webhook afterwards, or a
second reconcile, credits nothing. Amount or currency mismatches are never credited, only
listed; sessions that name no order of ours are listed too. Each run is a row
(payment_reconcile_runs) with its window, counts and findings.

Each session is settled in its own short transaction, so one failure does not undo the others;
the run row is written before the provider is asked and finished afterwards.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from creditdash.billing.payments import webhooks
from creditdash.billing.payments.orders import REFUNDABLE
from creditdash.billing.payments.providers import ProviderFailed, StripeProvider
from creditdash.billing.payments.reconcile_models import ReconcileRun, SandboxPaidSession
from creditdash.core import db
from creditdash.core.errors import CreditdashError, ValidationFailed
from creditdash.core.money import format_minor
from creditdash.core.settings import Settings, get_settings
from creditdash.core.timeutil import utcnow

log = logging.getLogger(__name__)

DEFAULT_WINDOW = timedelta(days=3)
MAX_WINDOW = timedelta(days=90)
DAILY = timedelta(hours=24)
MAX_LISTED = 200  # findings kept per list in a run's JSON


@dataclass
class Report:
    run_id: int
    trigger: str
    started_at: datetime
    since: datetime
    until: datetime
    providers: list[str] = field(default_factory=list)
    sessions_seen: int = 0
    already_credited: int = 0
    credited: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    finished_at: datetime | None = None

    @property
    def needs_attention(self) -> bool:
        return bool(self.mismatches or self.unmatched)

    def describe(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "trigger": self.trigger,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "window": {"since": self.since.isoformat(), "until": self.until.isoformat()},
            "providers": self.providers,
            "counts": {
                "sessions_seen": self.sessions_seen,
                "credited": len(self.credited),
                "already_credited": self.already_credited,
                "mismatches": len(self.mismatches),
                "unmatched": len(self.unmatched),
            },
            "credited": self.credited,
            "mismatches": self.mismatches,
            "unmatched": self.unmatched,
            "error": self.error,
        }


def parse_since(text: str | None, *, now: datetime | None = None) -> datetime:
    """The window's start: a date (UTC midnight) or an ISO time; default 3 days ago."""
    now = now or utcnow()
    if not text or not text.strip():
        return now - DEFAULT_WINDOW
    raw = text.strip()
    try:
        since = (
            datetime.combine(date.fromisoformat(raw), datetime.min.time(), tzinfo=UTC)
            if len(raw) == 10
            else datetime.fromisoformat(raw)
        )
    except ValueError:
        raise ValidationFailed("--since is a date (YYYY-MM-DD) or an ISO time") from None
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if since > now:
        raise ValidationFailed("--since is in the future")
    if now - since > MAX_WINDOW:
        raise ValidationFailed(f"--since may reach back at most {MAX_WINDOW.days} days")
    return since


def enabled_providers(settings: Settings) -> list[str]:
    names = []
    if settings.stripe_enabled:
        names.append("stripe")
    if settings.sandbox_enabled:
        names.append("sandbox")
    return names


# ------------------------------------------------------------------------ the sandbox's record


def record_sandbox_payment(obj: dict[str, Any]) -> None:
    """The sandbox page took payment for this session (before it delivers the webhook): kept
    as the sandbox provider's own record, which reconcile lists. Once per session."""
    try:
        with db.session_scope() as session:
            if session.get(SandboxPaidSession, str(obj["id"])) is not None:
                return
            session.add(
                SandboxPaidSession(
                    session_id=str(obj["id"]),
                    order_id=str(obj["client_reference_id"]),
                    amount_minor=int(obj["amount_total"]),
                    currency=str(obj["currency"]).upper(),
                    payment_intent=str(obj["payment_intent"]),
                )
            )
    except IntegrityError:
        return  # recorded concurrently by a double submit


def _sandbox_sessions(since: datetime) -> list[dict[str, Any]]:
    with db.session_scope(readonly=True) as session:
        rows = session.execute(
            select(SandboxPaidSession)
            .where(col(SandboxPaidSession.paid_at) >= since)
            .order_by(col(SandboxPaidSession.paid_at))
        ).scalars()
        return [
            {
                "id": row.session_id,
                "object": "checkout.session",
                "mode": "payment",
                "client_reference_id": row.order_id,
                "amount_total": row.amount_minor,
                "currency": row.currency.lower(),
                "payment_status": "paid",
                "payment_intent": row.payment_intent,
                "metadata": {"order_id": row.order_id},
            }
            for row in rows
        ]


def _paid_sessions(provider: str, since: datetime, settings: Settings) -> list[dict[str, Any]]:
    if provider == "stripe":
        listed = StripeProvider(settings).list_checkout_sessions(created_gte=int(since.timestamp()))
    else:
        listed = _sandbox_sessions(since)
    return [s for s in listed if s.get("mode") == "payment" and s.get("payment_status") == "paid"]


# ------------------------------------------------------------------------------- the run


def reconcile(
    *,
    since: datetime,
    trigger: str,
    settings: Settings | None = None,
    claim_key: str | None = None,
) -> Report:
    """One run over [since, now]: settle what is paid but not credited, list the rest."""
    settings = settings or get_settings()
    providers = enabled_providers(settings)
    if not providers:
        raise ValidationFailed("no payment provider is configured; nothing to reconcile")
    now = utcnow()
    with db.session_scope() as session:
        run = ReconcileRun(
            trigger=trigger[:200],
            claim_key=claim_key,
            started_at=now,
            window_start=since,
            window_end=now,
        )
        session.add(run)
        session.flush()
        assert run.id is not None
        run_id = run.id
    report = Report(run_id, trigger, now, since, now, providers)
    try:
        for provider in providers:
            for obj in _paid_sessions(provider, since, settings):
                report.sessions_seen += 1
                try:
                    _one(provider, obj, report)
                except CreditdashError as exc:
                    failed = {"provider": provider, "session_id": str(obj.get("id"))}
                    _keep(report.unmatched, {**failed, "action": f"failed: {exc.message}"})
    except ProviderFailed as exc:
        report.error = exc.message
    except Exception as exc:  # the run row must say it failed, then the caller sees it
        report.error = f"{type(exc).__name__}: reconcile stopped"
        _finish(report)
        raise
    _finish(report)
    return report


def _one(provider: str, obj: dict[str, Any], report: Report) -> None:
    source = f"{provider}:reconcile:{report.run_id}"
    seen = {
        "provider": provider,
        "session_id": str(obj.get("id")),
        "paid": format_minor(int(obj.get("amount_total") or 0), str(obj.get("currency") or "")),
        "paid_currency": str(obj.get("currency") or "").upper(),
    }
    with db.session_scope() as session:
        order = webhooks.order_for_session(session, provider, obj)
        if order is None:
            _keep(report.unmatched, {**seen, "action": "listed: no order of ours"})
            return
        seen |= {
            "order_id": order.id,
            "customer_id": order.customer_id,
            "order_amount": format_minor(order.gross_minor, order.currency),
            "order_currency": order.currency,
        }
        if order.status in REFUNDABLE:
            report.already_credited += 1
            return
        outcome, _, detail = webhooks.settle_paid_session(
            session, provider=provider, obj=obj, source=source
        )
    if outcome == "credited":
        _keep(report.credited, {**seen, "action": "credited"})
    elif outcome == "amount_mismatch":
        _keep(report.mismatches, {**seen, "action": "not credited: " + detail})
    elif outcome == "already_settled":
        report.already_credited += 1
    else:
        _keep(report.unmatched, {**seen, "action": f"{outcome}: {detail}"})


def _keep(findings: list[dict[str, Any]], item: dict[str, Any]) -> None:
    if len(findings) < MAX_LISTED:
        findings.append(item)


def _finish(report: Report) -> None:
    report.finished_at = utcnow()
    with db.session_scope() as session:
        run = session.get(ReconcileRun, report.run_id)
        assert run is not None
        run.finished_at = report.finished_at
        run.sessions_seen = report.sessions_seen
        run.credited = len(report.credited)
        run.already_credited = report.already_credited
        run.mismatches = len(report.mismatches)
        run.unmatched = len(report.unmatched)
        run.findings_json = json.dumps(
            {
                "providers": report.providers,
                "credited": report.credited,
                "mismatches": report.mismatches,
                "unmatched": report.unmatched,
            },
            sort_keys=True,
        )
        run.error = report.error[:500]
        session.add(run)


def run_daily(*, settings: Settings | None = None) -> int:
    """The jobs loop's reconcile: at most once per 24 h across processes and restarts; the
    number of orders it credited (0 when it was not due)."""
    settings = settings or get_settings()
    if not enabled_providers(settings):
        return 0
    with db.session_scope(readonly=True) as session:
        last = session.execute(
            select(ReconcileRun)
            .where(col(ReconcileRun.claim_key).is_not(None))
            .order_by(col(ReconcileRun.id).desc())
            .limit(1)
        ).scalar_one_or_none()
        if last is not None and last.started_at > utcnow() - DAILY:
            return 0
        claim = f"daily-after:{last.id if last is not None else 0}"
    try:
        report = reconcile(
            since=utcnow() - DEFAULT_WINDOW, trigger="jobs", settings=settings, claim_key=claim
        )
    except IntegrityError:
        return 0  # another process claimed this day's run first
    if report.error or report.needs_attention:
        log.warning(
            "payments reconcile run %s: %s mismatches, %s unmatched%s",
            report.run_id,
            len(report.mismatches),
            len(report.unmatched),
            f", error: {report.error}" if report.error else "",
        )
    return len(report.credited)


# ------------------------------------------------------------------------------ reading runs


def last_run(session: Session) -> ReconcileRun | None:
    return session.execute(
        select(ReconcileRun).order_by(col(ReconcileRun.id).desc()).limit(1)
    ).scalar_one_or_none()


def describe_run(run: ReconcileRun) -> dict[str, Any]:
    findings = json.loads(run.findings_json or "{}")
    return {
        "run_id": run.id,
        "trigger": run.trigger,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "window": {"since": run.window_start.isoformat(), "until": run.window_end.isoformat()},
        "providers": findings.get("providers", []),
        "counts": {
            "sessions_seen": run.sessions_seen,
            "credited": run.credited,
            "already_credited": run.already_credited,
            "mismatches": run.mismatches,
            "unmatched": run.unmatched,
        },
        "credited": findings.get("credited", []),
        "mismatches": findings.get("mismatches", []),
        "unmatched": findings.get("unmatched", []),
        "error": run.error,
    }
