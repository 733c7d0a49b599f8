"""Native daily statistics: /v1/tenants/{tenant_id}/apps/{app_id}/statistics/..."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from app.auth import api_key_guard
from app.config import Settings
from app.params import TRIGGER_SOURCES, choice_param, created_range, uuid_param, zone_param
from app.routes.params import End, Start, TimeZone, TriggeredFrom
from app.service import StatsService
from schemas.requests import DailyMeasure, DailyRequest
from schemas.statistics import (
    DailyInteractionsAnswer,
    DailyRunsAnswer,
    DailyTerminalsAnswer,
    DailyTokenCostsAnswer,
)


def daily_request(
    settings: Settings,
    tenant_id: str,
    app_id: str,
    start: str | None,
    end: str | None,
    timezone: str,
    triggered_from: str | None,
) -> DailyRequest:
    zone = zone_param("timezone", timezone)
    created = created_range(start, end, zone, settings.max_range_days)
    return DailyRequest(
        tenant_id=uuid_param("tenant_id", tenant_id),
        app_id=uuid_param("app_id", app_id),
        triggered_from=choice_param("triggered_from", triggered_from or "app-run", TRIGGER_SOURCES),
        timezone=zone,
        start_us=created.start_us,
        end_us=created.end_us,
    )


async def answer_daily(
    service: StatsService, measure: DailyMeasure, request: DailyRequest, answer_type: type
) -> Response[object]:
    data, cache_result = await service.daily(measure, request)
    return Response(answer_type(data=data), headers={"X-Cache": cache_result})


class StatisticsController(Controller):
    path = "/v1/tenants/{tenant_id:str}/apps/{app_id:str}/statistics"
    tags = ("statistics",)
    guards = (api_key_guard,)

    @get("/daily-runs", summary="Runs per local day (every status counts)")
    async def daily_runs(
        self,
        service: NamedDependency[StatsService],
        settings: NamedDependency[Settings],
        tenant_id: FromPath[str],
        app_id: FromPath[str],
        start: Start = None,
        end: End = None,
        timezone: TimeZone = "UTC",
        triggered_from: TriggeredFrom = None,
    ) -> Response[DailyRunsAnswer]:
        request = daily_request(settings, tenant_id, app_id, start, end, timezone, triggered_from)
        return await answer_daily(service, "daily_runs", request, DailyRunsAnswer)  # type: ignore[return-value]

    @get("/daily-terminals", summary="Distinct users per local day")
    async def daily_terminals(
        self,
        service: NamedDependency[StatsService],
        settings: NamedDependency[Settings],
        tenant_id: FromPath[str],
        app_id: FromPath[str],
        start: Start = None,
        end: End = None,
        timezone: TimeZone = "UTC",
        triggered_from: TriggeredFrom = None,
    ) -> Response[DailyTerminalsAnswer]:
        request = daily_request(settings, tenant_id, app_id, start, end, timezone, triggered_from)
        return await answer_daily(service, "daily_terminals", request, DailyTerminalsAnswer)  # type: ignore[return-value]

    @get("/token-costs", summary="Tokens of the runs created each local day (latest versions)")
    async def token_costs(
        self,
        service: NamedDependency[StatsService],
        settings: NamedDependency[Settings],
        tenant_id: FromPath[str],
        app_id: FromPath[str],
        start: Start = None,
        end: End = None,
        timezone: TimeZone = "UTC",
        triggered_from: TriggeredFrom = None,
    ) -> Response[DailyTokenCostsAnswer]:
        request = daily_request(settings, tenant_id, app_id, start, end, timezone, triggered_from)
        return await answer_daily(service, "daily_token_costs", request, DailyTokenCostsAnswer)  # type: ignore[return-value]

    @get("/average-interactions", summary="Runs per user per local day (2 decimals, half-even)")
    async def average_interactions(
        self,
        service: NamedDependency[StatsService],
        settings: NamedDependency[Settings],
        tenant_id: FromPath[str],
        app_id: FromPath[str],
        start: Start = None,
        end: End = None,
        timezone: TimeZone = "UTC",
        triggered_from: TriggeredFrom = None,
    ) -> Response[DailyInteractionsAnswer]:
        request = daily_request(settings, tenant_id, app_id, start, end, timezone, triggered_from)
        return await answer_daily(service, "daily_interactions", request, DailyInteractionsAnswer)  # type: ignore[return-value]
