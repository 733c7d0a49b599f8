"""What the routes call: the repository behind the answer cache, with day-granular rollups.

Daily measures are additive by day (terminals are distinct *per day*), so a bounded range is
answered from per-day cache entries plus **one** backend query spanning only the days that are
not cached (and partial days at the edges, which are never cached). A day is settled once it
ended more than STATS_SETTLE_AFTER ago and is then kept STATS_SETTLED_TTL; live days
STATS_CACHE_TTL. A dashboard refreshing 90 days thus asks the backend for about one day.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from app.cache import AnswerCache, CacheResult
from app.config import Settings
from app.days import from_epoch_us, local_midnight_us, touched_days
from app.measures import DailyMeasure
from app.repository import StatsRepository
from schemas.requests import CountRequest, DailyRequest, RunDetailRequest, RunListRequest
from schemas.runs import RunCounts, RunDetail, RunPageAnswer

APPS_WINDOW_S = 90 * 86_400


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
            )
        outcome: list[CacheResult] = ["miss"]

        async def from_rollups() -> list[Any]:
            answer, outcome[0] = await self._daily_from_rollups(measure, request)
            return answer

        answer, result = await self.cache.get_or_load(
            (measure.name, request), self._ttl(request.end_us), from_rollups
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

        cached = {span.day: self.cache.peek(day_key(span)) for span in spans}
        have = {day: value for day, value in cached.items() if value is not None}
        # The backend covers everything not answered by cached whole days, as one range.
        uncovered_start, uncovered_end = request.start_us, request.end_us
        for span in spans:  # leading cached days
            if span.day not in have or uncovered_start != span.start_us:
                break
            uncovered_start = span.end_us
        for span in reversed(spans):  # trailing cached days
            if span.day not in have or uncovered_end != span.end_us:
                break
            uncovered_end = span.start_us
        fetched: dict[str, Any] = {}
        if uncovered_start < uncovered_end:
            part = msgspec.structs.replace(request, start_us=uncovered_start, end_us=uncovered_end)
            fetched = {item.date: item for item in await self.repository.daily(measure, part)}
            for span in spans:
                if uncovered_start <= span.start_us and span.end_us <= uncovered_end:
                    self.cache.put(
                        day_key(span), fetched.get(span.day.isoformat(), _NO_RUNS), self._ttl(span.end_us)
                    )
        from_cache = {
            span.day.isoformat(): have[span.day]
            for span in spans
            if span.day in have and (span.end_us <= uncovered_start or span.start_us >= uncovered_end)
        }
        combined = {**{day: item for day, item in from_cache.items() if item is not _NO_RUNS}, **fetched}
        answer = [combined[day] for day in sorted(combined)]
        if not from_cache:
            return answer, "miss"
        return answer, "hit" if uncovered_start >= uncovered_end else "partial"

    async def counts(self, request: CountRequest) -> tuple[RunCounts, CacheResult]:
        return await self.cache.get_or_load(
            ("counts", request), self.settings.cache_ttl, lambda: self.repository.counts(request)
        )

    async def run_page(self, request: RunListRequest) -> tuple[RunPageAnswer, CacheResult]:
        return await self.cache.get_or_load(
            ("runs", request), self.settings.cache_ttl, lambda: self.repository.run_page(request)
        )

    async def apps(self) -> tuple[list[tuple[str, str, int]], CacheResult]:
        """Apps with runs in the last 90 days (for pickers); refreshed every 5 minutes."""
        since = int(self.wall_clock()) - APPS_WINDOW_S
        return await self.cache.get_or_load(("apps",), 300, lambda: self.repository.apps(since))

    async def run_detail(self, request: RunDetailRequest) -> tuple[RunDetail | None, CacheResult]:
        return await self.cache.get_or_load(
            ("run", request), self.settings.cache_ttl, lambda: self.repository.run_detail(request)
        )


class _NoRuns(msgspec.Struct, frozen=True):
    """A cached day that has no runs (the backend lists only days with runs)."""


_NO_RUNS = _NoRuns()
