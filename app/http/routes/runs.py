"""The run routes: counts by status, the run list, one run and its node executions, for native and
console paths (the console's answers name who ran each run and node, in Dify's shapes)."""

from __future__ import annotations

from typing import Any, TypeVar

from litestar import Controller, Response
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException

from app.core.service import StatsService
from app.http.console_guards import GUARD_OPTION, WORKFLOW_RUNS
from app.http.csv import AnswerFormat, CsvTable, csv_response
from app.http.errors import ERROR_RESPONSES
from app.http.routes.formats import csv_operation
from app.http.routes.methods import get_or_head
from schemas.nodes import (
    ConsoleNodeExecutionsAnswer,
    ConsoleRunDetail,
    ConsoleRunPageAnswer,
    NodeExecutionsAnswer,
)
from schemas.requests import CountRequest, RunDetailRequest, RunListRequest
from schemas.runs import RunCounts, RunDetail, RunPageAnswer, RunSummary

RUN_NOT_FOUND = "Workflow run not found"  # Dify's own words
RUN_COLUMNS = CsvTable(RunSummary)
T = TypeVar("T")
# The routes the native controller and its console subclass (Dify's shapes) both answer.
LIST_ROUTE: dict[str, Any] = {
    "path": "", "responses": ERROR_RESPONSES, "summary": "Runs, newest first, in keyset pages",
}  # fmt: skip
DETAIL_ROUTE: dict[str, Any] = {
    "path": "/{run_id:str}", "responses": ERROR_RESPONSES,
    "summary": "One run (latest version); 404 outside this tenant and app",
}  # fmt: skip
NODES_ROUTE: dict[str, Any] = {
    "path": "/{run_id:str}/node-executions", "responses": ERROR_RESPONSES,
    "summary": "A run's node executions (latest versions), by created time, index, id; "
    "404 outside this tenant and app",
}  # fmt: skip


def found(answer: T | None) -> T:
    """The answer about a run, or Dify's 404 when it is not a run of this tenant and app."""
    if answer is None:
        raise NotFoundException(RUN_NOT_FOUND)
    return answer


def run_page_filename(request: RunListRequest) -> str:
    """`runs_<app id>_<trigger source>[_after_<last id>].csv`: a page has no range, but a place."""
    after = f"_after_{request.last_id}" if request.last_id else ""
    return f"runs_{request.app_id}_{request.triggered_from}{after}.csv"


def node_headers(cache_result: str, has_more: bool) -> dict[str, str]:
    """X-Cache, and X-Has-More when the run has more node executions than STATS_NODE_EXECUTIONS_MAX."""
    headers = {"X-Cache": cache_result}
    if has_more:
        headers["X-Has-More"] = "true"
    return headers


class RunCountsController(Controller):
    """The counts by status, which every run controller answers at its `/count`."""

    tags = ("runs",)

    @get_or_head(
        "/count", responses=ERROR_RESPONSES, summary="Runs by status (latest versions); total includes paused"
    )
    async def count(
        self, service: NamedDependency[StatsService], count_request: NamedDependency[CountRequest]
    ) -> Response[RunCounts]:
        counts, cache_result = await service.counts(count_request)
        start_us = count_request.start_us
        if count_request.time_range_s is not None:
            start_us = int((service.wall_clock() - count_request.time_range_s) * 1_000_000)
        return Response(counts, headers=service.answer_headers(cache_result, start_us))


class RunsController(RunCountsController):
    """Mounted at .../runs natively; the console subclass moves it to Dify's path and answers
    Dify's shapes."""

    path = "/runs"

    @get_or_head(**LIST_ROUTE, operation_class=csv_operation(RUN_COLUMNS.describe()))
    async def run_list(
        self,
        service: NamedDependency[StatsService],
        list_request: NamedDependency[RunListRequest],
        answer_format: NamedDependency[AnswerFormat],
    ) -> Response[RunPageAnswer]:
        """As CSV, the page's runs; `X-Has-More` says whether a next page follows (`last_id` =
        the last row's id)."""
        page, cache_result = await service.run_page(list_request)
        if answer_format == "csv":
            headers = {"X-Cache": cache_result, "X-Has-More": str(page.has_more).lower()}
            return csv_response(RUN_COLUMNS, page.data, run_page_filename(list_request), headers)
        return Response(page, headers={"X-Cache": cache_result})

    @get_or_head(**DETAIL_ROUTE)
    async def run_detail(
        self, service: NamedDependency[StatsService], detail_request: NamedDependency[RunDetailRequest]
    ) -> Response[RunDetail]:
        detail, cache_result = await service.run_detail(detail_request)
        return Response(found(detail), headers={"X-Cache": cache_result})

    @get_or_head(**NODES_ROUTE)
    async def node_executions(
        self, service: NamedDependency[StatsService], detail_request: NamedDependency[RunDetailRequest]
    ) -> Response[NodeExecutionsAnswer]:
        answer, cache_result = await service.node_executions(detail_request)
        return Response(found(answer), headers=node_headers(cache_result, found(answer).has_more))


class ConsoleRunsController(RunsController):
    """Dify's paths and shapes: who ran each run and node (`created_by_account`,
    `created_by_end_user`), and node executions in Dify's field list. Dify answers these for
    advanced-chat and workflow apps, to members it lets manage the app (console_guards)."""

    path = "/workflow-runs"
    opt = {GUARD_OPTION: WORKFLOW_RUNS}  # noqa: RUF012 - litestar copies a layer's options per application

    @get_or_head(**LIST_ROUTE)
    async def run_list(
        self, service: NamedDependency[StatsService], list_request: NamedDependency[RunListRequest]
    ) -> Response[ConsoleRunPageAnswer]:
        page, cache_result = await service.console_run_page(list_request)
        return Response(page, headers={"X-Cache": cache_result})

    @get_or_head(**DETAIL_ROUTE)
    async def run_detail(
        self, service: NamedDependency[StatsService], detail_request: NamedDependency[RunDetailRequest]
    ) -> Response[ConsoleRunDetail]:
        detail, cache_result = await service.console_run_detail(detail_request)
        return Response(found(detail), headers={"X-Cache": cache_result})

    @get_or_head(**NODES_ROUTE)
    async def node_executions(
        self, service: NamedDependency[StatsService], detail_request: NamedDependency[RunDetailRequest]
    ) -> Response[ConsoleNodeExecutionsAnswer]:
        nodes, cache_result = await service.console_node_executions(detail_request)
        if nodes is None:  # not a run of this app: Dify answers an empty list, not a 404
            return Response(ConsoleNodeExecutionsAnswer(data=[]), headers=node_headers(cache_result, False))
        return Response(nodes.answer, headers=node_headers(cache_result, nodes.has_more))
