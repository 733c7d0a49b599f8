"""Native daily statistics: /v1/tenants/{tenant_id}/apps/{app_id}/statistics/..."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from app.config import Settings
from app.params import TRIGGER_SOURCES, choice_param, created_range, uuid_param, zone_param
from app.repository import StatsRepository
from schemas.statistics import DailyRunsAnswer

Start = Annotated[
    str | None, QueryParameter(description="ISO-8601 date/date-time or YYYY-MM-DD HH:MM; inclusive")
]
End = Annotated[
    str | None, QueryParameter(description="ISO-8601 date/date-time or YYYY-MM-DD HH:MM; exclusive")
]
TimeZone = Annotated[str, QueryParameter(description="IANA zone of the days and of naive bounds")]
TriggeredFrom = Annotated[str, QueryParameter(description="trigger source")]


class StatisticsController(Controller):
    path = "/v1/tenants/{tenant_id:str}/apps/{app_id:str}/statistics"
    tags = ("statistics",)

    @get("/daily-runs", summary="Runs per local day (every status counts)")
    async def daily_runs(
        self,
        repository: NamedDependency[StatsRepository],
        settings: NamedDependency[Settings],
        tenant_id: FromPath[str],
        app_id: FromPath[str],
        start: Start = None,
        end: End = None,
        timezone: TimeZone = "UTC",
        triggered_from: TriggeredFrom = "app-run",
    ) -> DailyRunsAnswer:
        zone = zone_param("timezone", timezone)
        created = created_range(start, end, zone, settings.max_range_days)
        scope = repository.scope(
            uuid_param("tenant_id", tenant_id),
            uuid_param("app_id", app_id),
            choice_param("triggered_from", triggered_from, TRIGGER_SOURCES),
            created,
        )
        if created.empty:
            return DailyRunsAnswer(data=[])
        return DailyRunsAnswer(data=await repository.daily_runs(scope, zone))
