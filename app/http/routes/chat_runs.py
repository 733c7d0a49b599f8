"""Dify's advanced-chat (chatflow) run routes: the run list, each run with its chat message, and
the counts by status, answered like the console's /workflow-runs ones. Dify answers them for
advanced-chat apps only, to members it lets manage the app (app/http/console_guards.py)."""

from __future__ import annotations

from litestar import Controller, Response
from litestar.di import NamedDependency

from app.core.chat_runs import ChatRunList
from app.core.service import StatsService
from app.http.console_guards import ADVANCED_CHAT_RUNS, GUARD_OPTION
from app.http.routes.methods import get_or_head
from app.http.routes.runs import COUNT_ROUTE, LIST_ROUTE, counts_response
from schemas.chat_runs import ConsoleChatRunPageAnswer
from schemas.requests import CountRequest, RunListRequest
from schemas.runs import RunCounts


class AdvancedChatRunsController(Controller):
    path = "/advanced-chat/workflow-runs"
    tags = ("runs",)
    opt = {GUARD_OPTION: ADVANCED_CHAT_RUNS}  # noqa: RUF012 - litestar copies a layer's options per application

    @get_or_head(**COUNT_ROUTE)
    async def count(
        self, service: NamedDependency[StatsService], count_request: NamedDependency[CountRequest]
    ) -> Response[RunCounts]:
        return await counts_response(service, count_request)

    @get_or_head(**LIST_ROUTE)
    async def run_list(
        self, chat_runs: NamedDependency[ChatRunList], list_request: NamedDependency[RunListRequest]
    ) -> Response[ConsoleChatRunPageAnswer]:
        page, cache_result = await chat_runs.page(list_request)
        return Response(page, headers={"X-Cache": cache_result})
