"""What the routes call: every answer behind the answer cache; daily ranges through the daily core.

A bounded daily range (no status filter) is assembled from settled days, edges and live days
(app/core/daily.py); anything else is one read of the repository. Each answer is cached as a
whole too (app/core/cache.py): for STATS_CACHE_TTL while it holds a live day, else for
STATS_SETTLED_TTL, the interval at which settled days are validated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from app.config import Settings
from app.core import answers
from app.core.cache import AnswerCache, CacheResult
from app.core.daily import DailyRanges
from app.core.days import from_epoch_us
from app.core.kept_runs import RunStateStore
from app.core.live import KeptDays
from app.core.measures import DailyMeasure
from app.core.shared import Shared
from app.stores.node_repository import NodeExecutionRepository
from app.stores.people import PeopleReader
from app.stores.repository import StatsRepository
from queries.rows import AppActivityRow
from schemas.discovery import TenantAppsAnswer, TenantsAnswer
from schemas.nodes import (
    ConsoleNodes,
    ConsoleRunDetail,
    ConsoleRunPageAnswer,
    NodeExecutionsAnswer,
)
from schemas.requests import CountRequest, DailyRequest, RunDetailRequest, RunListRequest
from schemas.runs import RunCounts, RunDetail, RunPageAnswer

log = structlog.get_logger("dify_stats.service")
APPS_WINDOW_S = 90 * 86_400
T = TypeVar("T")


class StatsService:
    def __init__(
        self,
        repository: StatsRepository,
        settings: Settings,
        shared: Shared | None = None,
        wall_clock: Callable[[], float] = time.time,
        nodes: NodeExecutionRepository | None = None,
        people: PeopleReader | None = None,
        cache_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`shared`: what replicas share (app/fleet builds it); by default this process alone."""
        shared = shared or Shared.alone(settings)
        self.repository = repository
        self.settings = settings
        self.wall_clock = wall_clock
        self.nodes = nodes
        self.people = people or PeopleReader(None)
        self.cache = AnswerCache(
            settings.cache_max_entries,
            settings.stale_max,
            settings.tenant_share,
            cache_clock,
            shared.answers,
            near=shared.near,
        )
        self.kept_runs = RunStateStore(settings.live_runs_max, settings.tenant_share, settings.settled_ttl)
        now = lambda: self.wall_clock()  # noqa: E731 - read through, so that tests may move it
        kept = KeptDays(repository, self.kept_runs, shared.kept_runs, shared.settled, settings, now)
        self.ranges = DailyRanges(repository, shared.settled, kept, settings, now)

    def _ttl(self, end_us: int | None) -> float:
        settled = end_us is not None and end_us / 1e6 + self.settings.settle_after <= self.wall_clock()
        return self.settings.settled_ttl if settled else self.settings.cache_ttl

    async def daily(self, measure: DailyMeasure, request: DailyRequest) -> tuple[list[Any], CacheResult]:
        """The measure's points. Settled days and kept runs hold every status together, so a range
        filtered by status (Grafana's ad-hoc filter, rare) is read whole, like an open range."""
        whole = request.start_us is None or request.end_us is None or request.status is not None
        value_type = list[measure.point_type]  # type: ignore[name-defined]
        key, ttl = (measure.name, request), self._ttl(request.end_us)
        if whole or request.start_us == request.end_us:
            load = lambda: self.repository.daily(measure, request)  # noqa: E731
            return await self.cache.get_or_load(
                key, ttl, load, tenant=request.tenant_id, value_type=value_type
            )
        outcome: list[CacheResult] = ["miss"]

        async def from_parts() -> list[Any]:
            answer, outcome[0] = await self.ranges.answer(measure, request)
            return answer

        answer, result = await self.cache.get_or_load(
            key, ttl, from_parts, tenant=request.tenant_id, value_type=value_type
        )
        return answer, outcome[0] if result == "miss" else result

    def answer_headers(self, cache_result: CacheResult, start_us: int | None) -> dict[str, str]:
        """X-Cache, and X-Data-Available-From when the range starts before the oldest day the
        sources still hold (the LogStore keeps ALIYUN_SLS_LOGSTORE_TTL days, and no workflow_runs
        answers for the days before): such days are not zeros, they are gone."""
        headers: dict[str, str] = {"X-Cache": cache_result}
        oldest = self.repository.sources[-1]
        ttl_days = self.settings.logstore_ttl_days
        if ttl_days is None or oldest.plan == "workflow_runs":
            return headers
        horizon_s = int(self.wall_clock()) - ttl_days * 86_400
        if start_us is None or start_us < horizon_s * 1_000_000:
            available = from_epoch_us(horizon_s * 1_000_000).isoformat().replace("+00:00", "Z")
            headers["X-Data-Available-From"] = available
            log.info("range_before_retention", available_from=available)
        return headers

    async def counts(self, request: CountRequest) -> tuple[RunCounts, CacheResult]:
        return await self.cache.get_or_load(
            ("counts", request),
            self.settings.cache_ttl,
            lambda: self.repository.counts(request),
            tenant=request.tenant_id,
            value_type=RunCounts,
        )

    async def run_page(self, request: RunListRequest) -> tuple[RunPageAnswer, CacheResult]:
        return await self.cache.get_or_load(
            ("runs", request),
            self.settings.cache_ttl,
            lambda: self.repository.run_page(request),
            tenant=request.tenant_id,
            value_type=RunPageAnswer,
        )

    async def tenant_apps(self, tenant_id: str) -> tuple[TenantAppsAnswer, CacheResult]:
        """The tenant's apps with runs created in the last 90 days."""
        return await self._activity(
            ("tenant-apps", tenant_id),
            tenant_id,
            lambda since_s, rows: TenantAppsAnswer(since=since_s, data=answers.busiest_apps(rows)),
            TenantAppsAnswer,
        )

    async def tenants(self) -> tuple[TenantsAnswer, CacheResult]:
        """Every tenant with runs created in the last 90 days."""
        return await self._activity(
            ("tenants",),
            None,
            lambda since_s, rows: TenantsAnswer(since=since_s, data=answers.busiest_tenants(rows)),
            TenantsAnswer,
        )

    async def _activity(
        self,
        key: tuple[str, ...],
        tenant_id: str | None,
        answer: Callable[[int, list[AppActivityRow]], T],
        answer_type: type[T],
    ) -> tuple[T, CacheResult]:
        since_s = int(self.wall_clock()) - APPS_WINDOW_S

        async def load() -> T:
            return answer(since_s, await self.repository.app_activity(tenant_id, since_s * 1_000_000))

        return await self.cache.get_or_load(
            key, self.settings.cache_ttl, load, tenant=tenant_id or "", value_type=answer_type
        )

    async def run_detail(self, request: RunDetailRequest) -> tuple[RunDetail | None, CacheResult]:
        return await self.cache.get_or_load(
            ("run", request),
            self.settings.cache_ttl,
            lambda: self.repository.run_detail(request),
            tenant=request.tenant_id,
            value_type=RunDetail | None,
        )

    async def console_run_page(self, request: RunListRequest) -> tuple[ConsoleRunPageAnswer, CacheResult]:
        """The run list as Dify's console shows it: who ran each run (one read of Dify's database)."""

        async def load() -> ConsoleRunPageAnswer:
            page = await self.repository.run_page(request)
            people = await self.people.read((run.created_by_role, run.created_by) for run in page.data)
            return answers.console_run_page(page, people)

        return await self.cache.get_or_load(
            ("console-runs", request),
            self.settings.cache_ttl,
            load,
            tenant=request.tenant_id,
            value_type=ConsoleRunPageAnswer,
        )

    async def console_run_detail(
        self, request: RunDetailRequest
    ) -> tuple[ConsoleRunDetail | None, CacheResult]:
        async def load() -> ConsoleRunDetail | None:
            detail = await self.repository.run_detail(request)
            if detail is None:
                return None
            people = await self.people.read([(detail.created_by_role, detail.created_by)])
            return answers.console_run_detail(detail, people)

        return await self.cache.get_or_load(
            ("console-run", request),
            self.settings.cache_ttl,
            load,
            tenant=request.tenant_id,
            value_type=ConsoleRunDetail | None,
        )

    async def node_executions(
        self, request: RunDetailRequest
    ) -> tuple[NodeExecutionsAnswer | None, CacheResult]:
        return await self._node_executions(
            ("nodes", request), request, lambda answer: answer, NodeExecutionsAnswer | None
        )

    async def console_node_executions(
        self, request: RunDetailRequest
    ) -> tuple[ConsoleNodes | None, CacheResult]:
        return await self._node_executions(
            ("console-nodes", request), request, answers.console_node_executions, ConsoleNodes | None
        )

    async def _node_executions(
        self,
        key: tuple[str, RunDetailRequest],
        request: RunDetailRequest,
        shape: Callable[[NodeExecutionsAnswer], T],
        value_type: Any,
    ) -> tuple[T | None, CacheResult]:
        """Cached as the run detail (and shared with replicas); a finished run's are settled
        (STATS_SETTLED_TTL)."""
        assert self.nodes is not None
        nodes = self.nodes
        settled = [False]

        async def load() -> T | None:
            found = await nodes.read(request)
            if found is None:
                return None
            settled[0] = found.settled
            return shape(found.answer)

        answer, result = await self.cache.get_or_load(
            key, self.settings.cache_ttl, load, tenant=request.tenant_id, value_type=value_type
        )
        if result == "miss" and settled[0]:
            ttl = self.settings.settled_ttl
            await self.cache.store(key, answer, ttl, tenant=request.tenant_id, value_type=value_type)
        return answer, result
