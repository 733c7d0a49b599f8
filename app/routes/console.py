"""Dify console drop-in: the monitoring page's own paths, answered from the LogStore.

nginx routes these paths here (deploy recipe in the README); the caller's Dify session is checked
by Dify itself (app/console_auth.py), which also gives the tenant and the account's time zone in
which `start`/`end` (`YYYY-MM-DD HH:MM`) are read, exactly as Dify reads them.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from app.config import Settings
from app.console_auth import ConsoleAccess, ConsoleAuthorizer
from app.params import created_range, uuid_param, zone_param
from app.routes.params import End, LastId, Limit, Start, Status, TimeRange, TriggeredFrom
from app.routes.runs import count_request, detail_request, list_request
from app.routes.statistics import answer_daily
from app.service import StatsService
from schemas.requests import DailyMeasure, DailyRequest
from schemas.runs import RunCounts, RunDetail, RunPageAnswer
from schemas.statistics import (
    DailyInteractionsAnswer,
    DailyRunsAnswer,
    DailyTerminalsAnswer,
    DailyTokenCostsAnswer,
)

AnyRequest = Request[Any, Any, Any]


async def _access(
    authorizer: ConsoleAuthorizer, request: AnyRequest, app_id: str
) -> tuple[str, ConsoleAccess]:
    checked_app = uuid_param("app_id", app_id)  # validated before anything is forwarded to Dify
    return checked_app, await authorizer.authorize(request, checked_app)


async def _console_daily(
    measure: DailyMeasure,
    answer_type: type,
    request: AnyRequest,
    authorizer: ConsoleAuthorizer,
    service: StatsService,
    settings: Settings,
    app_id: str,
    start: str | None,
    end: str | None,
) -> Response[object]:
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


class ConsoleStatisticsController(Controller):
    path = "/console/api/apps/{app_id:str}/workflow/statistics"
    tags = ("dify console",)

    @get("/daily-conversations", summary="Dify console: runs per day (answers `runs`)")
    async def daily_conversations(
        self,
        request: AnyRequest,
        authorizer: NamedDependency[ConsoleAuthorizer],
        service: NamedDependency[StatsService],
        settings: NamedDependency[Settings],
        app_id: FromPath[str],
        start: Start = None,
        end: End = None,
    ) -> Response[DailyRunsAnswer]:
        return await _console_daily(  # type: ignore[return-value]
            "daily_runs", DailyRunsAnswer, request, authorizer, service, settings, app_id, start, end
        )

    @get("/daily-terminals", summary="Dify console: distinct users per day")
    async def daily_terminals(
        self,
        request: AnyRequest,
        authorizer: NamedDependency[ConsoleAuthorizer],
        service: NamedDependency[StatsService],
        settings: NamedDependency[Settings],
        app_id: FromPath[str],
        start: Start = None,
        end: End = None,
    ) -> Response[DailyTerminalsAnswer]:
        return await _console_daily(  # type: ignore[return-value]
            "daily_terminals",
            DailyTerminalsAnswer,
            request,
            authorizer,
            service,
            settings,
            app_id,
            start,
            end,
        )

    @get("/token-costs", summary="Dify console: tokens per day")
    async def token_costs(
        self,
        request: AnyRequest,
        authorizer: NamedDependency[ConsoleAuthorizer],
        service: NamedDependency[StatsService],
        settings: NamedDependency[Settings],
        app_id: FromPath[str],
        start: Start = None,
        end: End = None,
    ) -> Response[DailyTokenCostsAnswer]:
        return await _console_daily(  # type: ignore[return-value]
            "daily_token_costs",
            DailyTokenCostsAnswer,
            request,
            authorizer,
            service,
            settings,
            app_id,
            start,
            end,
        )

    @get("/average-app-interactions", summary="Dify console: runs per user per day")
    async def average_app_interactions(
        self,
        request: AnyRequest,
        authorizer: NamedDependency[ConsoleAuthorizer],
        service: NamedDependency[StatsService],
        settings: NamedDependency[Settings],
        app_id: FromPath[str],
        start: Start = None,
        end: End = None,
    ) -> Response[DailyInteractionsAnswer]:
        return await _console_daily(  # type: ignore[return-value]
            "daily_interactions",
            DailyInteractionsAnswer,
            request,
            authorizer,
            service,
            settings,
            app_id,
            start,
            end,
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
