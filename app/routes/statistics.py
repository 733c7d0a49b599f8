"""Native daily statistics: /v1/tenants/{tenant_id}/apps/{app_id}/statistics/...

The four measures share one handler shape, built once per measure by `native_daily_route`.
"""

from typing import Any

from litestar import Response, Router, get
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
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

# measure -> (native path, console path, answer struct, summary)
DAILY_ROUTES: dict[DailyMeasure, tuple[str, str, type[Any], str]] = {
    "daily_runs": (
        "/daily-runs",
        "/daily-conversations",
        DailyRunsAnswer,
        "Runs per local day (every status)",
    ),
    "daily_terminals": (
        "/daily-terminals",
        "/daily-terminals",
        DailyTerminalsAnswer,
        "Distinct users per day",
    ),
    "daily_token_costs": (
        "/token-costs",
        "/token-costs",
        DailyTokenCostsAnswer,
        "Tokens of the runs of each day",
    ),
    "daily_interactions": (
        "/average-interactions",
        "/average-app-interactions",
        DailyInteractionsAnswer,
        "Runs per user per day (2 decimals, half-even)",
    ),
}


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
    service: StatsService, measure: DailyMeasure, request: DailyRequest, answer_type: type[Any]
) -> Response[Any]:
    data, cache_result = await service.daily(measure, request)
    return Response(answer_type(data=data), headers={"X-Cache": cache_result})


def native_daily_route(measure: DailyMeasure) -> HTTPRouteHandler:
    path, _, answer_type, summary = DAILY_ROUTES[measure]

    async def handler(
        service: NamedDependency[StatsService],
        settings: NamedDependency[Settings],
        tenant_id: FromPath[str],
        app_id: FromPath[str],
        start: Start = None,
        end: End = None,
        timezone: TimeZone = "UTC",
        triggered_from: TriggeredFrom = None,
    ) -> Response[answer_type]:  # type: ignore[valid-type]
        request = daily_request(settings, tenant_id, app_id, start, end, timezone, triggered_from)
        return await answer_daily(service, measure, request, answer_type)

    handler.__name__ = handler.__qualname__ = measure
    return get(path, summary=summary, name=f"native-{measure}")(handler)


statistics_router = Router(
    path="/v1/tenants/{tenant_id:str}/apps/{app_id:str}/statistics",
    route_handlers=[native_daily_route(measure) for measure in DAILY_ROUTES],
    guards=[api_key_guard],
    tags=["statistics"],
)
