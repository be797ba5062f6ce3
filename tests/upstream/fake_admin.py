"""Fake OpenAI and Anthropic admin APIs on loopback, answering cost reports shaped as the
providers document them: daily buckets, grouped by line item (OpenAI, USD as JSON numbers) or
by description (Anthropic, cents as decimal strings), one bucket a page with has_more and
next_page, so a client that does not follow the pages misses days."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

OPENAI_ADMIN_KEY = "sk-admin-openai-test-0001"
ANTHROPIC_ADMIN_KEY = "sk-ant-admin01-test-0002"


@dataclass
class FakeAdmin:
    # day -> [(line item or model, amount as the raw JSON text the provider would send)]
    openai_costs: dict[date, list[tuple[str, str]]] = field(default_factory=dict)
    anthropic_costs: dict[date, list[tuple[str, str]]] = field(default_factory=dict)
    seen: list[dict[str, str]] = field(default_factory=list)
    fail_status: int | None = None

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/organization/costs", self.openai, methods=["GET"]),
                Route("/v1/organizations/cost_report", self.anthropic, methods=["GET"]),
            ]
        )

    def _page(self, request: Request, days: list[date]) -> tuple[int, list[date]]:
        self.seen.append({**dict(request.query_params), "_path": request.url.path})
        index = int(request.query_params.get("page", "page_0").removeprefix("page_"))
        return index, days[index : index + 1]

    async def openai(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {OPENAI_ADMIN_KEY}":
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        if self.fail_status:
            return JSONResponse({"error": {"message": "no"}}, status_code=self.fail_status)
        q = request.query_params
        if q.get("bucket_width") != "1d" or q.get("group_by") != "line_item":
            return JSONResponse({"error": {"message": "bad query"}}, status_code=400)
        start = datetime.fromtimestamp(int(q["start_time"]), tz=UTC).date()
        end = datetime.fromtimestamp(int(q["end_time"]), tz=UTC).date()  # exclusive
        days = [d for d in sorted(self.openai_costs) if start <= d < end]
        index, page = self._page(request, days)
        buckets = []
        for day in page:
            begin = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
            # Written by hand so each amount is the JSON number text given, digit for digit.
            results = ",".join(
                '{"object": "organization.costs.result", "amount": {"value": ' + amount
                + ', "currency": "usd"}, "line_item": ' + json.dumps(item)
                + ', "project_id": null}'
                for item, amount in self.openai_costs[day]
            )  # fmt: skip
            buckets.append(
                f'{{"object": "bucket", "start_time": {begin}, "end_time": {begin + 86_400}, '
                f'"results": [{results}]}}'
            )
        more = index + 1 < len(days)
        cursor = json.dumps(f"page_{index + 1}") if more else "null"
        body = (
            f'{{"object": "page", "data": [{",".join(buckets)}], '
            f'"has_more": {"true" if more else "false"}, "next_page": {cursor}}}'
        )
        return Response(body, media_type="application/json")

    async def anthropic(self, request: Request) -> Response:
        if request.headers.get("x-api-key") != ANTHROPIC_ADMIN_KEY:
            return JSONResponse({"type": "error"}, status_code=401)
        if not request.headers.get("anthropic-version"):
            return JSONResponse({"type": "error"}, status_code=400)
        q = request.query_params
        if q.get("group_by[]") != "description":
            return JSONResponse({"type": "error"}, status_code=400)
        start = datetime.fromisoformat(q["starting_at"]).date()
        end = datetime.fromisoformat(q["ending_at"]).date()
        days = [d for d in sorted(self.anthropic_costs) if start <= d < end]
        index, page = self._page(request, days)
        data = [
            {
                "starting_at": f"{day.isoformat()}T00:00:00Z",
                "ending_at": f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z",
                "results": [
                    {
                        "amount": cents,
                        "currency": "USD",
                        "description": f"{model} usage",
                        "model": model,
                        "cost_type": "tokens",
                        "token_type": "output_tokens",
                        "service_tier": "standard",
                        "context_window": "0-200k",
                        "workspace_id": None,
                    }
                    for model, cents in self.anthropic_costs[day]
                ],
            }
            for day in page
        ]
        more = index + 1 < len(days)
        return JSONResponse(
            {"data": data, "has_more": more, "next_page": f"page_{index + 1}" if more else None}
        )
