"""Dify console drop-in: the monitoring page's own paths, answered from the LogStore.

nginx routes these paths here (deploy recipe in the README); the caller's Dify session is checked
by Dify itself (app/console_auth.py), which also gives the tenant and the account's time zone in
which `start`/`end` (`YYYY-MM-DD HH:MM`) are read, exactly as Dify reads them.
"""

from typing import Any

from litestar import Controller, Request, Response, Router, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from app.config import Settings
from app.console_auth import ConsoleAccess, ConsoleAuthorizer
from app.params import created_range, uuid_param, zone_param
from app.routes.params import End, LastId, Limit, Start, Status, TimeRange, TriggeredFrom
from app.routes.runs import count_request, detail_request, list_request
from app.routes.statistics import DAILY_ROUTES, answer_daily
from app.service import StatsService
from schemas.requests import DailyMeasure, DailyRequest
from schemas.runs import RunCounts, RunDetail, RunPageAnswer

AnyRequest = Request[Any, Any, Any]


async def _access(
    authorizer: ConsoleAuthorizer, request: AnyRequest, app_id: str
) -> tuple[str, ConsoleAccess]:
    checked_app = uuid_param("app_id", app_id)  # validated before anything is forwarded to Dify
    return checked_app, await authorizer.authorize(request, checked_app)


def console_daily_route(measure: DailyMeasure) -> HTTPRouteHandler:
    """Dify's path for the measure; `start`/`end` are read in the account's zone, trigger app-run."""
    _, path, answer_type, summary = DAILY_ROUTES[measure]

    async def handler(
        request: AnyRequest,
        authorizer: NamedDependency[ConsoleAuthorizer],
        service: NamedDependency[StatsService],
        settings: NamedDependency[Settings],
        app_id: FromPath[str],
        start: Start = None,
        end: End = None,
    ) -> Response[answer_type]:  # type: ignore[valid-type]
        app, access = await _access(authorizer, request, app_id)
        zone = zone_param("timezone", access.timezone)
        created = created_range(start, end, zone, settings.max_range_days)
        daily = DailyRequest(
            tenant_id=access.tenant_id,
            app_id=app,
            triggered_from="app-run",  # fixed, as in Dify's console
            timezone=zone,
            start_us=created.start_us,
            end_us=created.end_us,
        )
        return await answer_daily(service, measure, daily, answer_type)

    handler.__name__ = handler.__qualname__ = f"console_{measure}"
    return get(path, summary=f"Dify console: {summary}", name=f"console-{measure}")(handler)


console_statistics_router = Router(
    path="/console/api/apps/{app_id:str}/workflow/statistics",
    route_handlers=[console_daily_route(measure) for measure in DAILY_ROUTES],
    tags=["dify console"],
)


class ConsoleRunsController(Controller):
    path = "/console/api/apps/{app_id:str}/workflow-runs"
    tags = ("dify console",)

    @get("/count", summary="Dify console: runs by status")
    async def count(
        self,
        request: AnyRequest,
        authorizer: NamedDependency[ConsoleAuthorizer],
        service: NamedDependency[StatsService],
        settings: NamedDependency[Settings],
        app_id: FromPath[str],
        status: Status = None,
        time_range: TimeRange = None,
        triggered_from: TriggeredFrom = None,
    ) -> Response[RunCounts]:
        app, access = await _access(authorizer, request, app_id)
        counts, cache_result = await service.counts(
            count_request(settings, access.tenant_id, app, status, time_range, triggered_from)
        )
        return Response(counts, headers={"X-Cache": cache_result})

    @get("", summary="Dify console: runs, newest first, in keyset pages")
    async def run_list(
        self,
        request: AnyRequest,
        authorizer: NamedDependency[ConsoleAuthorizer],
        service: NamedDependency[StatsService],
        app_id: FromPath[str],
        limit: Limit = None,
        last_id: LastId = None,
        status: Status = None,
        triggered_from: TriggeredFrom = None,
    ) -> Response[RunPageAnswer]:
        app, access = await _access(authorizer, request, app_id)
        page, cache_result = await service.run_page(
            list_request(access.tenant_id, app, limit, last_id, status, triggered_from)
        )
        return Response(page, headers={"X-Cache": cache_result})

    @get("/{run_id:str}", summary="Dify console: one run")
    async def run_detail(
        self,
        request: AnyRequest,
        authorizer: NamedDependency[ConsoleAuthorizer],
        service: NamedDependency[StatsService],
        app_id: FromPath[str],
        run_id: FromPath[str],
    ) -> Response[RunDetail]:
        app, access = await _access(authorizer, request, app_id)
        detail, cache_result = await service.run_detail(detail_request(access.tenant_id, app, run_id))
        if detail is None:
            raise NotFoundException("Workflow run not exist")
        return Response(detail, headers={"X-Cache": cache_result})
