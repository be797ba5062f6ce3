"""Reading a provider's own daily cost report, per model, over HTTP.

OpenAI: GET <base>/organization/costs with start_time and end_time (Unix seconds, end
exclusive), bucket_width=1d and group_by=line_item; each bucket's results carry
amount.value in USD (a JSON number, read as a Decimal, never a float) and a line item such as
"gpt-4o-mini-2024-07-18, input", whose part before the comma is the model. Anthropic:
GET <base>/organizations/cost_report with starting_at and ending_at (RFC 3339), bucket_width=1d
and group_by[]=description; each result's amount is a decimal string in cents of USD, with
the model beside it (null for costs that are not tokens, which are kept under their
description). Both page with has_more and next_page, passed back as `page`.

Limits: at most MAX_DAYS days a call, MAX_PAGES pages, MAX_BODY_BYTES a page, a timeout per
page; no redirects followed; the connection pinned to the address the SSRF guard checked.
An error answer is reported by status only (a body may echo the key).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from creditdash.catalog.models import ANTHROPIC_VERSION
from creditdash.catalog.urlguard import pin_base_url
from creditdash.core.errors import ValidationFailed
from creditdash.core.settings import get_settings
from creditdash.upstream.sources import ReportAccess

MAX_DAYS = 92
MAX_PAGES = 100
MAX_BODY_BYTES = 5 * 1024 * 1024
TIMEOUT_S = 30.0
BUCKETS_PER_PAGE = 31
CENTS = Decimal(100)


class ReportFailed(ValidationFailed):
    """The provider's cost report could not be read; nothing was stored."""


@dataclass(frozen=True)
class ReportedCost:
    day: date
    model: str
    usd: Decimal


def check_range(first_day: date, last_day: date) -> None:
    if last_day < first_day:
        raise ValidationFailed("--to is before --from")
    if (last_day - first_day).days >= MAX_DAYS:
        raise ValidationFailed(f"choose at most {MAX_DAYS} days at a time")


def fetch_costs(access: ReportAccess, *, first_day: date, last_day: date) -> list[ReportedCost]:
    """Every day's cost per model from first_day to last_day (both included), summed over the
    report's line items."""
    check_range(first_day, last_day)
    start = datetime.combine(first_day, time.min, tzinfo=UTC)
    end = datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=UTC)
    if access.kind == "anthropic":
        path = "/organizations/cost_report"
        params: dict[str, Any] = {
            "starting_at": start.isoformat().replace("+00:00", "Z"),
            "ending_at": end.isoformat().replace("+00:00", "Z"),
            "bucket_width": "1d",
            "group_by[]": "description",
            "limit": BUCKETS_PER_PAGE,
        }
        headers = {"x-api-key": access.admin_key, "anthropic-version": ANTHROPIC_VERSION}
    else:
        path = "/organization/costs"
        params = {
            "start_time": int(start.timestamp()),
            "end_time": int(end.timestamp()),
            "bucket_width": "1d",
            "group_by": "line_item",
            "limit": BUCKETS_PER_PAGE,
        }
        headers = {"authorization": f"Bearer {access.admin_key}"}
    totals: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for page in _pages(access, path, params, headers):
        for day, model, usd in _rows(access.kind, page):
            if first_day <= day <= last_day:
                totals[(day, model)] += usd
    return [ReportedCost(day, model, usd) for (day, model), usd in sorted(totals.items())]


def _pages(
    access: ReportAccess, path: str, params: dict[str, Any], headers: dict[str, str]
) -> list[dict[str, Any]]:
    pinned = pin_base_url(
        access.base_url,
        kind=access.provider_kind,
        allow_private=get_settings().allow_private_upstreams,
    )
    headers = {**headers, "accept": "application/json"}
    if pinned.host_header:
        headers["host"] = pinned.host_header
    extensions = {"sni_hostname": pinned.tls_server_name} if pinned.tls_server_name else {}
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as client:
        while True:
            query = {**params, **({"page": cursor} if cursor else {})}
            try:
                answer = client.get(pinned.base_url + path, params=query, headers=headers,
                                    extensions=extensions)  # fmt: skip
            except httpx.HTTPError as exc:
                raise ReportFailed(
                    f"could not reach {access.provider}'s cost report: {type(exc).__name__}"
                ) from None
            if answer.status_code != 200:
                raise ReportFailed(
                    f"{access.provider}'s cost report answered HTTP {answer.status_code}"
                )
            page = _parse(answer, access.provider)
            pages.append(page)
            more, cursor = page.get("has_more"), page.get("next_page")
            if not more or not cursor:
                return pages
            if len(pages) >= MAX_PAGES:
                raise ReportFailed(f"{access.provider}'s cost report has over {MAX_PAGES} pages")
            if not isinstance(cursor, str):
                raise ReportFailed(f"{access.provider}'s cost report gave a bad next_page")


def _parse(answer: httpx.Response, provider: str) -> dict[str, Any]:
    if len(answer.content) > MAX_BODY_BYTES:
        raise ReportFailed(f"{provider}'s cost report page is over {MAX_BODY_BYTES} bytes")
    try:
        # Amounts are money: numbers are read as Decimal, exactly as written.
        page = json.loads(answer.content, parse_float=Decimal)
    except ValueError:
        raise ReportFailed(f"{provider}'s cost report is not JSON") from None
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise ReportFailed(f"{provider}'s cost report has no data list")
    return page


def _rows(kind: str, page: dict[str, Any]) -> list[tuple[date, str, Decimal]]:
    rows = []
    try:
        for bucket in page["data"]:
            if kind == "anthropic":
                day = datetime.fromisoformat(str(bucket["starting_at"])).astimezone(UTC).date()
            else:
                day = datetime.fromtimestamp(int(bucket["start_time"]), tz=UTC).date()
            for result in bucket.get("results") or []:
                rows.append((day, *_result(kind, result)))
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise ReportFailed(f"the cost report is not shaped as documented ({exc})") from None
    return rows


def _result(kind: str, result: dict[str, Any]) -> tuple[str, Decimal]:
    if kind == "anthropic":
        if str(result.get("currency", "USD")).upper() != "USD":
            raise ValueError(f"currency {result.get('currency')!r}")
        # A decimal string in cents; a JSON number would be a float nobody should trust.
        if not isinstance(result["amount"], str):
            raise ValueError("amount is not a decimal string")
        usd = Decimal(result["amount"]) / CENTS
        model = result.get("model") or result.get("description") or "(other)"
        return str(model), usd
    amount = result["amount"]
    if str(amount.get("currency", "usd")).lower() != "usd":
        raise ValueError(f"currency {amount.get('currency')!r}")
    value = amount["value"]
    usd = value if isinstance(value, Decimal) else Decimal(int(value))
    line_item = result.get("line_item") or "(other)"
    return str(line_item).split(",")[0].strip(), usd
