"""Dify's APIWorkflowRunRepository statistics over the LogStore: plan, run, convert.

Queries come from queries/ through the planner; rows become answer structs through
queries/rows.py. Nothing here writes SQL.
"""

from __future__ import annotations

from app.backend import Backend
from app.config import Settings
from app.params import CreatedRange
from queries import rows
from queries.planner import Planner
from queries.scope import RunScope
from schemas.statistics import DailyInteractions, DailyRuns, DailyTerminals, DailyTokenCosts


class StatsRepository:
    def __init__(self, backend: Backend, settings: Settings) -> None:
        self.backend = backend
        self.planner = Planner(plan=settings.query_plan)
        self.settings = settings

    def scope(self, tenant_id: str, app_id: str, triggered_from: str, created: CreatedRange) -> RunScope:
        return RunScope(
            tenant_id=tenant_id,
            app_id=app_id,
            triggered_from=triggered_from,
            start_us=created.start_us,
            end_us=created.end_us,
            time_slack_s=self.settings.time_slack,
            dialect=self.settings.dialect,
        )

    async def daily_runs(self, scope: RunScope, zone: str) -> list[DailyRuns]:
        return rows.daily_runs(await self.backend.fetch(self.planner.daily_runs(scope, zone)))

    async def daily_terminals(self, scope: RunScope, zone: str) -> list[DailyTerminals]:
        return rows.daily_terminals(await self.backend.fetch(self.planner.daily_terminals(scope, zone)))

    async def daily_token_costs(self, scope: RunScope, zone: str) -> list[DailyTokenCosts]:
        return rows.daily_token_costs(await self.backend.fetch(self.planner.daily_token_costs(scope, zone)))

    async def daily_interactions(self, scope: RunScope, zone: str) -> list[DailyInteractions]:
        return rows.daily_interactions(await self.backend.fetch(self.planner.daily_interactions(scope, zone)))
