"""Dify's advanced-chat (chatflow) run routes: the run list, each run with its chat message, and
the counts by status, answered like the console's /workflow-runs ones. Dify answers them for
advanced-chat apps only, to members it lets manage the app (app/http/console_guards.py)."""

from __future__ import annotations

from litestar import Response
from litestar.di import NamedDependency

from app.core.chat_runs import ChatRunList
from app.http.console_guards import ADVANCED_CHAT_RUNS, GUARD_OPTION
from app.http.routes.methods import get_or_head
from app.http.routes.runs import LIST_ROUTE, RunCountsController
from schemas.chat_runs import ConsoleChatRunPageAnswer
from schemas.requests import RunListRequest


class AdvancedChatRunsController(RunCountsController):
    path = "/advanced-chat/workflow-runs"
    opt = {GUARD_OPTION: ADVANCED_CHAT_RUNS}  # noqa: RUF012 - litestar copies a layer's options per application

    @get_or_head(**LIST_ROUTE)
    async def run_list(
        self, chat_runs: NamedDependency[ChatRunList], list_request: NamedDependency[RunListRequest]
    ) -> Response[ConsoleChatRunPageAnswer]:
        page, cache_result = await chat_runs.page(list_request)
        return Response(page, headers={"X-Cache": cache_result})
