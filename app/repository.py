"""Dify's APIWorkflowRunRepository statistics over the LogStore: plan, run, convert.

Queries come from queries/ through the planner; rows become answer structs through
queries/rows.py. Nothing here writes SQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from app.backend import Backend
from app.config import Settings
from app.params import BadParameter
from queries import rows
from queries.apps import apps_with_runs
from queries.planner import Planner
from queries.runs import RunPage
from queries.scope import RunScope
from schemas.requests import CountRequest, DailyMeasure, DailyRequest, RunDetailRequest, RunListRequest
from schemas.runs import RunCounts, RunDetail, RunPageAnswer

Converter = Callable[[Sequence[Sequence[Any]]], Sequence[msgspec.Struct]]
DAILY_CONVERTERS: dict[str, Converter] = {
    "daily_runs": rows.daily_runs,
    "daily_terminals": rows.daily_terminals,
    "daily_token_costs": rows.daily_token_costs,
    "daily_interactions": rows.daily_interactions,
}


class StatsRepository:
    def __init__(self, backend: Backend, settings: Settings) -> None:
        self.backend = backend
        self.planner = Planner(plan=settings.query_plan)
        self.settings = settings

    def _scope(
        self, tenant_id: str, app_id: str, triggered_from: str, start_us: int | None, end_us: int | None
    ) -> RunScope:
        return RunScope(
            tenant_id=tenant_id,
            app_id=app_id,
            triggered_from=triggered_from,
            start_us=start_us,
            end_us=end_us,
            time_slack_s=self.settings.time_slack,
            dialect=self.settings.dialect,
        )

    async def daily(self, measure: DailyMeasure, request: DailyRequest) -> Sequence[msgspec.Struct]:
        if request.start_us is not None and request.start_us == request.end_us:
            return []
        scope = self._scope(
            request.tenant_id, request.app_id, request.triggered_from, request.start_us, request.end_us
        )
        query = getattr(self.planner, measure)(scope, request.timezone)
        return DAILY_CONVERTERS[measure](await self.backend.fetch(query))

    async def counts(self, request: CountRequest) -> RunCounts:
        start_us, end_us = request.start_us, request.end_us
        if request.time_range_s is not None:
            start_us = time.time_ns() // 1000 - request.time_range_s * 1_000_000
        scope = self._scope(request.tenant_id, request.app_id, request.triggered_from, start_us, end_us)
        answer = rows.run_counts(await self.backend.fetch(self.planner.status_counts(scope, request.status)))
        if request.status is None:
            return answer
        # Dify: with a status filter, `total` and that status' key are its count, the rest 0.
        total = answer.total
        key = request.status.replace("-", "_")
        values = {key: total} if key in RunCounts.__struct_fields__ else {}
        return RunCounts(total=total, **values)

    async def run_page(self, request: RunListRequest) -> RunPageAnswer:
        scope = self._scope(request.tenant_id, request.app_id, request.triggered_from, None, None)
        after = None
        if request.last_id is not None:
            found = await self.backend.fetch(self.planner.run_cursor(scope, request.last_id))
            if not found:
                raise BadParameter("last_id", "is not a run of this app and trigger source")
            after = RunPage(after_created_us=int(found[0][0]), after_id=request.last_id)
        page = await self.backend.fetch(
            self.planner.run_page(scope, request.limit + 1, request.status, after)
        )
        return RunPageAnswer(
            limit=request.limit,
            has_more=len(page) > request.limit,
            data=[rows.run_summary(row) for row in page[: request.limit]],
        )

    async def apps(self, since_epoch_s: int) -> list[tuple[str, str, int]]:
        """(tenant_id, app_id, runs) of the apps with rows since the instant, busiest first."""
        found = await self.backend.fetch(apps_with_runs(since_epoch_s))
        return [(str(tenant), str(app), int(runs)) for tenant, app, runs in found]

    async def run_detail(self, request: RunDetailRequest) -> RunDetail | None:
        found = await self.backend.fetch(
            self.planner.run_detail(request.tenant_id, request.app_id, request.run_id)
        )
        return rows.run_detail(found[0]) if found else None
