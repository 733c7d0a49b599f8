"""The run routes: counts by status, the run list and one run, for native and console paths."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException

from app.errors import ERROR_RESPONSES
from app.service import StatsService
from schemas.requests import CountRequest, RunDetailRequest, RunListRequest
from schemas.runs import RunCounts, RunDetail, RunPageAnswer


class RunsController(Controller):
    """Mounted at .../runs natively; the console subclass only moves it to Dify's path."""

    path = "/runs"
    tags = ("runs",)

    @get(
        "/count", responses=ERROR_RESPONSES, summary="Runs by status (latest versions); total includes paused"
    )
    async def count(
        self, service: NamedDependency[StatsService], count_request: NamedDependency[CountRequest]
    ) -> Response[RunCounts]:
        counts, cache_result = await service.counts(count_request)
        return Response(counts, headers={"X-Cache": cache_result})

    @get("", responses=ERROR_RESPONSES, summary="Runs, newest first, in keyset pages")
    async def run_list(
        self, service: NamedDependency[StatsService], list_request: NamedDependency[RunListRequest]
    ) -> Response[RunPageAnswer]:
        page, cache_result = await service.run_page(list_request)
        return Response(page, headers={"X-Cache": cache_result})

    @get(
        "/{run_id:str}",
        responses=ERROR_RESPONSES,
        summary="One run (latest version); 404 outside this tenant and app",
    )
    async def run_detail(
        self, service: NamedDependency[StatsService], detail_request: NamedDependency[RunDetailRequest]
    ) -> Response[RunDetail]:
        detail, cache_result = await service.run_detail(detail_request)
        if detail is None:
            raise NotFoundException("Workflow run not exist")  # Dify's own words
        return Response(detail, headers={"X-Cache": cache_result})


class ConsoleRunsController(RunsController):
    path = "/workflow-runs"
