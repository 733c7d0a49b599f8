"""What the routes call: the repository behind the answer cache, with day-granular rollups.

Daily measures are additive by day (terminals are distinct *per day*), so a bounded range is
answered from per-day cache entries of its whole local days, wherever it starts and ends, plus
backend queries for what they do not cover: the partial days at its edges (never cached) and
uncached days, at most two statements. A day is settled once it
ended more than STATS_SETTLE_AFTER ago and is then kept STATS_SETTLED_TTL; live days
STATS_CACHE_TTL. A dashboard refreshing 90 days thus asks the backend for about one day.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import msgspec
import structlog

from app import answers
from app.cache import AnswerCache, CacheResult
from app.config import Settings
from app.days import from_epoch_us, local_midnight_us, touched_days
from app.measures import DailyMeasure
from app.repository import StatsRepository
from queries.rows import AppActivityRow
from schemas.discovery import TenantAppsAnswer, TenantsAnswer
from schemas.requests import CountRequest, DailyRequest, RunDetailRequest, RunListRequest
from schemas.runs import RunCounts, RunDetail, RunPageAnswer

log = structlog.get_logger("dify_stats.service")
APPS_WINDOW_S = 90 * 86_400
T = TypeVar("T")


class DaySpan(msgspec.Struct, frozen=True):
    """One local calendar day as a [start_us, end_us) instant range."""

    day: date
    start_us: int
    end_us: int


def local_day_spans(zone: str, start_us: int, end_us: int) -> list[DaySpan]:
    """The whole local days inside [start_us, end_us), skipping days whose midnight is ambiguous
    (a zone changing offset across midnight): those are left to the backend, never cached."""
    tz = ZoneInfo(zone)

    def midnight_us(day: date) -> int | None:
        instant = local_midnight_us(day, zone)
        before, after = from_epoch_us(instant - 1, tz).date(), from_epoch_us(instant, tz).date()
        return instant if (before, after) == (day - timedelta(days=1), day) else None

    spans = []
    for day in touched_days(zone, start_us, end_us):
        begin, finish = midnight_us(day), midnight_us(day + timedelta(days=1))
        if begin is not None and finish is not None and start_us <= begin and finish <= end_us:
            spans.append(DaySpan(day, begin, finish))
    return spans


def uncovered_segments(start_us: int, end_us: int, cached: list[DaySpan]) -> list[tuple[int, int]]:
    """The parts of [start_us, end_us) that cached whole days do not answer, in order: usually the
    partial day at each edge (Grafana asks `now-30d..now`) and the live days. More than two
    become one range from the first to the last, so a cache with holes costs one statement."""
    segments = []
    position = start_us
    for span in cached:
        if position < span.start_us:
            segments.append((position, span.start_us))
        position = max(position, span.end_us)
    if position < end_us:
        segments.append((position, end_us))
    if len(segments) > 2:
        segments = [(segments[0][0], segments[-1][1])]
    return segments


class StatsService:
    def __init__(
        self,
        repository: StatsRepository,
        cache: AnswerCache,
        settings: Settings,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.repository = repository
        self.cache = cache
        self.settings = settings
        self.wall_clock = wall_clock

    def _settled(self, end_us: int | None) -> bool:
        return end_us is not None and end_us / 1e6 + self.settings.settle_after <= self.wall_clock()

    def _ttl(self, end_us: int | None) -> float:
        return self.settings.settled_ttl if self._settled(end_us) else self.settings.cache_ttl

    async def daily(self, measure: DailyMeasure, request: DailyRequest) -> tuple[list[Any], CacheResult]:
        if request.start_us is None or request.end_us is None or request.start_us == request.end_us:
            return await self.cache.get_or_load(
                (measure.name, request),
                self._ttl(request.end_us),
                lambda: self.repository.daily(measure, request),
                tenant=request.tenant_id,
            )
        outcome: list[CacheResult] = ["miss"]

        async def from_rollups() -> list[Any]:
            answer, outcome[0] = await self._daily_from_rollups(measure, request)
            return answer

        answer, result = await self.cache.get_or_load(
            (measure.name, request), self._ttl(request.end_us), from_rollups, tenant=request.tenant_id
        )
        return answer, outcome[0] if result == "miss" else result

    async def _daily_from_rollups(
        self, measure: DailyMeasure, request: DailyRequest
    ) -> tuple[list[Any], CacheResult]:
        assert request.start_us is not None and request.end_us is not None
        spans = local_day_spans(request.timezone, request.start_us, request.end_us)

        def day_key(span: DaySpan) -> tuple[object, ...]:
            return ("day", measure.name, request.tenant_id, request.app_id, request.triggered_from,
                    request.timezone, span.day)  # fmt: skip

        cached = {span.day: self.cache.peek(day_key(span), tenant=request.tenant_id) for span in spans}
        have = {day: value for day, value in cached.items() if value is not None}
        segments = uncovered_segments(request.start_us, request.end_us, [s for s in spans if s.day in have])
        found = await asyncio.gather(
            *(
                self.repository.daily(measure, msgspec.structs.replace(request, start_us=low, end_us=high))
                for low, high in segments
            )
        )
        fetched = {item.date: item for items in found for item in items}

        def uncovered(span: DaySpan) -> bool:
            return any(low <= span.start_us and span.end_us <= high for low, high in segments)

        for span in spans:
            if uncovered(span):
                value = fetched.get(span.day.isoformat(), _NO_RUNS)
                self.cache.put(day_key(span), value, self._ttl(span.end_us), tenant=request.tenant_id)
        from_cache = {
            span.day.isoformat(): have[span.day] for span in spans if span.day in have and not uncovered(span)
        }
        combined = {**{day: item for day, item in from_cache.items() if item is not _NO_RUNS}, **fetched}
        answer = [combined[day] for day in sorted(combined)]
        if not from_cache:
            return answer, "miss"
        return answer, "partial" if segments else "hit"

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
        )

    async def run_page(self, request: RunListRequest) -> tuple[RunPageAnswer, CacheResult]:
        return await self.cache.get_or_load(
            ("runs", request),
            self.settings.cache_ttl,
            lambda: self.repository.run_page(request),
            tenant=request.tenant_id,
        )

    async def apps(self) -> tuple[list[tuple[str, str, int]], CacheResult]:
        """Apps with runs in the last 90 days (for pickers); refreshed every 5 minutes."""
        since = int(self.wall_clock()) - APPS_WINDOW_S
        return await self.cache.get_or_load(
            ("apps",),
            300,
            lambda: self.repository.apps(since),
            tenant="",  # every tenant's apps
        )

    async def tenant_apps(self, tenant_id: str) -> tuple[TenantAppsAnswer, CacheResult]:
        """The tenant's apps with runs created in the last 90 days (as the Grafana picker's)."""
        return await self._activity(
            ("tenant-apps", tenant_id),
            tenant_id,
            lambda since_s, rows: TenantAppsAnswer(since=since_s, data=answers.busiest_apps(rows)),
        )

    async def tenants(self) -> tuple[TenantsAnswer, CacheResult]:
        """Every tenant with runs created in the last 90 days."""
        return await self._activity(
            ("tenants",),
            None,
            lambda since_s, rows: TenantsAnswer(since=since_s, data=answers.busiest_tenants(rows)),
        )

    async def _activity(
        self, key: tuple[str, ...], tenant_id: str | None, answer: Callable[[int, list[AppActivityRow]], T]
    ) -> tuple[T, CacheResult]:
        since_s = int(self.wall_clock()) - APPS_WINDOW_S

        async def load() -> T:
            return answer(since_s, await self.repository.app_activity(tenant_id, since_s * 1_000_000))

        return await self.cache.get_or_load(key, self.settings.cache_ttl, load, tenant=tenant_id or "")

    async def run_detail(self, request: RunDetailRequest) -> tuple[RunDetail | None, CacheResult]:
        return await self.cache.get_or_load(
            ("run", request),
            self.settings.cache_ttl,
            lambda: self.repository.run_detail(request),
            tenant=request.tenant_id,
        )


class _NoRuns(msgspec.Struct, frozen=True):
    """A cached day that has no runs (the backend lists only days with runs)."""


_NO_RUNS = _NoRuns()
