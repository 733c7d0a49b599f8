"""Native run routes: /v1/tenants/{tenant_id}/apps/{app_id}/runs[/count|/{run_id}]."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from app.auth import api_key_guard
from app.config import Settings
from app.params import STATUSES, TRIGGER_SOURCES, choice_param, limit_param, time_range_param, uuid_param
from app.routes.params import LastId, Limit, Status, TimeRange, TriggeredFrom
from app.service import StatsService
from schemas.requests import CountRequest, RunDetailRequest, RunListRequest
from schemas.runs import RunCounts, RunDetail, RunPageAnswer


def count_request(
    settings: Settings,
    tenant_id: str,
    app_id: str,
    status: str | None,
    time_range: str | None,
    trigger: str | None,
) -> CountRequest:
    return CountRequest(
        tenant_id=uuid_param("tenant_id", tenant_id),
        app_id=uuid_param("app_id", app_id),
        triggered_from=choice_param("triggered_from", trigger or "debugging", TRIGGER_SOURCES),
        status=choice_param("status", status, STATUSES) if status else None,
        time_range_s=time_range_param("time_range", time_range, settings.max_range_days)
        if time_range
        else None,
    )


def list_request(
    tenant_id: str,
    app_id: str,
    limit: str | None,
    last_id: str | None,
    status: str | None,
    trigger: str | None,
) -> RunListRequest:
    return RunListRequest(
        tenant_id=uuid_param("tenant_id", tenant_id),
        app_id=uuid_param("app_id", app_id),
        triggered_from=choice_param("triggered_from", trigger or "debugging", TRIGGER_SOURCES),
        status=choice_param("status", status, STATUSES) if status else None,
        limit=limit_param("limit", limit),
        last_id=uuid_param("last_id", last_id) if last_id else None,
    )


def detail_request(tenant_id: str, app_id: str, run_id: str) -> RunDetailRequest:
    return RunDetailRequest(
        tenant_id=uuid_param("tenant_id", tenant_id),
        app_id=uuid_param("app_id", app_id),
        run_id=uuid_param("run_id", run_id),
    )


class RunsController(Controller):
    path = "/v1/tenants/{tenant_id:str}/apps/{app_id:str}/runs"
    tags = ("runs",)
    guards = (api_key_guard,)

    @get("/count", summary="Runs by status (latest versions); total includes paused")
    async def count(
        self,
        service: NamedDependency[StatsService],
        settings: NamedDependency[Settings],
        tenant_id: FromPath[str],
        app_id: FromPath[str],
        status: Status = None,
        time_range: TimeRange = None,
        triggered_from: TriggeredFrom = None,
    ) -> Response[RunCounts]:
        request = count_request(settings, tenant_id, app_id, status, time_range, triggered_from)
        counts, cache_result = await service.counts(request)
        return Response(counts, headers={"X-Cache": cache_result})

    @get("", summary="Runs, newest first, in keyset pages")
    async def run_list(
        self,
        service: NamedDependency[StatsService],
        tenant_id: FromPath[str],
        app_id: FromPath[str],
        limit: Limit = None,
        last_id: LastId = None,
        status: Status = None,
        triggered_from: TriggeredFrom = None,
    ) -> Response[RunPageAnswer]:
        page, cache_result = await service.run_page(
            list_request(tenant_id, app_id, limit, last_id, status, triggered_from)
        )
        return Response(page, headers={"X-Cache": cache_result})

    @get("/{run_id:str}", summary="One run (latest version); 404 outside this tenant and app")
    async def run_detail(
        self,
        service: NamedDependency[StatsService],
        tenant_id: FromPath[str],
        app_id: FromPath[str],
        run_id: FromPath[str],
    ) -> Response[RunDetail]:
        detail, cache_result = await service.run_detail(detail_request(tenant_id, app_id, run_id))
        if detail is None:
            raise NotFoundException("workflow run not found")
        return Response(detail, headers={"X-Cache": cache_result})
