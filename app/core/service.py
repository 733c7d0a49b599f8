"""What the routes call: the repository behind the answer cache, with day rollups and kept runs.

Daily measures are additive by day (terminals are distinct *per day*), so a bounded range is
answered in parts: its settled whole days from per-day cache entries (a day is settled once it
ended more than STATS_SETTLE_AFTER ago, and is kept STATS_SETTLED_TTL); its live days, and a
partial settled day at its edge, from runs kept in memory (app/core/kept_runs.py) that a refresh
updates with the versions written since the last read; whatever is neither is read, in at most
two statements. A dashboard refreshing `now-90d..now` thus reads about its new versions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from contextlib import AbstractAsyncContextManager, nullcontext, suppress
from datetime import date, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

import msgspec
import structlog

from app.config import Settings
from app.core import answers
from app.core.cache import AnswerCache, CacheResult
from app.core.days import from_epoch_us, local_midnight_us, touched_days
from app.core.kept_runs import KeptRuns, RunStateStore, Wanted
from app.core.measures import DailyMeasure
from app.fleet.kept_runs import SharedRuns
from app.fleet.link import SharedUnavailable
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
FULL_READ_EVERY_S = 3_600  # kept runs are read whole again this often (versions later than the slack)
T = TypeVar("T")


class DaySpan(msgspec.Struct, frozen=True):
    """One local calendar day as a [start_us, end_us) instant range."""

    day: date
    start_us: int
    end_us: int


@lru_cache(maxsize=65_536)
def unambiguous_midnight_us(day: date, zone: str) -> int | None:
    """The instant `day` starts at in `zone`, or None when the zone changes offset across that
    midnight so that instants on either side may belong to either day."""
    tz = ZoneInfo(zone)
    instant = local_midnight_us(day, zone)
    before, after = from_epoch_us(instant - 1, tz).date(), from_epoch_us(instant, tz).date()
    return instant if (before, after) == (day - timedelta(days=1), day) else None


def local_day_spans(zone: str, start_us: int, end_us: int) -> list[DaySpan]:
    """The whole local days inside [start_us, end_us), skipping days whose midnight is ambiguous
    (a zone changing offset across midnight): those are left to the backend, never cached."""
    spans = []
    for day in touched_days(zone, start_us, end_us):
        begin = unambiguous_midnight_us(day, zone)
        finish = unambiguous_midnight_us(day + timedelta(days=1), zone)
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


class _Part(NamedTuple):
    """Points of part of a range; `remembered`: some came from memory; `read`: some were read."""

    points: list[Any]
    remembered: bool
    read: bool


def _live_key(request: DailyRequest) -> tuple[str, ...]:
    return ("runs", request.app_id, request.triggered_from, request.timezone)


class StatsService:
    def __init__(
        self,
        repository: StatsRepository,
        cache: AnswerCache,
        settings: Settings,
        wall_clock: Callable[[], float] = time.time,
        run_states: RunStateStore | None = None,
        shared_runs: SharedRuns | None = None,
        nodes: NodeExecutionRepository | None = None,
        people: PeopleReader | None = None,
    ) -> None:
        self.repository = repository
        self.nodes = nodes
        self.people = people or PeopleReader(None)
        self.cache = cache
        self.settings = settings
        self.wall_clock = wall_clock
        self.shared_runs = shared_runs
        self.run_states = run_states or RunStateStore(
            settings.live_runs_max, settings.tenant_share, settings.settled_ttl
        )

    def _settled(self, end_us: int | None) -> bool:
        return end_us is not None and end_us / 1e6 + self.settings.settle_after <= self.wall_clock()

    def _ttl(self, end_us: int | None) -> float:
        return self.settings.settled_ttl if self._settled(end_us) else self.settings.cache_ttl

    async def daily(self, measure: DailyMeasure, request: DailyRequest) -> tuple[list[Any], CacheResult]:
        """The measure's points. Day rollups and kept runs hold every status together, so a range
        filtered by status (Grafana's ad-hoc filter, rare) is read whole, like an open range."""
        whole = request.start_us is None or request.end_us is None or request.status is not None
        if whole or request.start_us == request.end_us:
            return await self.cache.get_or_load(
                (measure.name, request),
                self._ttl(request.end_us),
                lambda: self.repository.daily(measure, request),
                tenant=request.tenant_id,
                value_type=list[measure.point_type],  # type: ignore[name-defined]
            )
        outcome: list[CacheResult] = ["miss"]

        async def from_rollups() -> list[Any]:
            answer, outcome[0] = await self._daily_from_rollups(measure, request)
            return answer

        answer, result = await self.cache.get_or_load(
            (measure.name, request),
            self._ttl(request.end_us),
            from_rollups,
            tenant=request.tenant_id,
            value_type=list[measure.point_type],  # type: ignore[name-defined]
        )
        return answer, outcome[0] if result == "miss" else result

    async def _daily_from_rollups(
        self, measure: DailyMeasure, request: DailyRequest
    ) -> tuple[list[Any], CacheResult]:
        assert request.start_us is not None and request.end_us is not None
        start, end = request.start_us, request.end_us
        live_from = self._kept_live_from(request)
        split = end if live_from is None else min(end, max(start, live_from))
        parts = []
        if start < split:
            parts.append(self._from_day_rollups(measure, request, start, split))
        if split < end:
            assert live_from is not None
            parts.append(self._from_kept_runs(measure, request, split, end, live_from, None))
        found = await asyncio.gather(*parts)
        points = {item.date: item for part in found for item in part.points}
        answer = [points[day] for day in sorted(points)]
        if not any(part.remembered for part in found):
            return answer, "miss"
        return answer, "partial" if any(part.read for part in found) else "hit"

    def _kept_live_from(self, request: DailyRequest) -> int | None:
        """The local midnight live days start at (the day holding now - STATS_SETTLE_AFTER), when
        their runs can be kept; None otherwise (then they are re-read like any uncached day)."""
        if not self.run_states.may_keep(request.tenant_id, _live_key(request)):
            return None
        now_us = int(self.wall_clock() * 1_000_000)
        day = from_epoch_us(now_us - int(self.settings.settle_after * 1_000_000), ZoneInfo(request.timezone))
        midnight = unambiguous_midnight_us(day.date(), request.timezone)
        if midnight is None or not self.repository.keeps_runs(midnight, None):
            return None
        return midnight

    async def _from_day_rollups(
        self, measure: DailyMeasure, request: DailyRequest, low: int, high: int
    ) -> _Part:
        """[low, high) from cached whole days, plus reads of what they do not cover. Once all of
        its whole days are known they are also remembered as one block, so that a refresh of a
        long range looks its days up once, not once per day."""
        spans = local_day_spans(request.timezone, low, high)
        scope = (
            "day",
            measure.name,
            request.tenant_id,
            request.app_id,
            request.triggered_from,
            request.timezone,
        )
        contiguous = all(one.end_us == after.start_us for one, after in pairwise(spans))
        block_key = (*scope, spans[0].day, spans[-1].day) if spans and contiguous else None
        tenant, days_type = request.tenant_id, tuple[measure.point_type, ...]  # type: ignore[name-defined]
        if block_key is not None:
            block = (await self.cache.peek_many([block_key], tenant=tenant, value_type=days_type)).get(
                block_key
            )
            if block is not None:
                edges = await asyncio.gather(
                    *(self._segment(measure, request, *edge) for edge in uncovered_segments(low, high, spans))
                )
                points = [*block, *(item for part in edges for item in part.points)]
                return _Part(points, remembered=True, read=any(part.read for part in edges))

        # A day's value is its point, or no point: the backend lists only days with runs.
        day_keys = {span.day: (*scope, span.day) for span in spans}
        cached = await self.cache.peek_many(list(day_keys.values()), tenant=tenant, value_type=days_type)
        have = {day: cached[key] for day, key in day_keys.items() if key in cached}
        segments = uncovered_segments(low, high, [s for s in spans if s.day in have])
        found = await asyncio.gather(*(self._segment(measure, request, *segment) for segment in segments))
        fetched = {item.date: item for part in found for item in part.points}
        read_days = {
            span.day for span in spans if any(a <= span.start_us and span.end_us <= b for a, b in segments)
        }
        whole_days: list[Any] = []
        from_cache: list[Any] = []
        learned: list[tuple[Hashable, Any, float]] = []
        for span in spans:
            if span.day in read_days:
                point = fetched.get(span.day.isoformat())
                value = () if point is None else (point,)
                learned.append((day_keys[span.day], value, self._ttl(span.end_us)))
            else:
                value = have[span.day]
                from_cache += value
            whole_days += value
        if block_key is not None:
            learned.append((block_key, tuple(whole_days), self._ttl(spans[-1].end_us)))
        await self.cache.store_many(learned, tenant=tenant, value_type=days_type)
        points = [*from_cache, *fetched.values()]
        remembered = bool(have) or any(part.remembered for part in found)
        return _Part(points, remembered, read=any(part.read for part in found))

    async def _segment(self, measure: DailyMeasure, request: DailyRequest, low: int, high: int) -> _Part:
        """An uncovered segment: part of one settled day (a range's edge) from that day's kept
        runs, so that a range moving with now reads its edge day once; anything else is read."""
        days = touched_days(request.timezone, low, high)
        if len(days) == 1:
            since = unambiguous_midnight_us(days[0], request.timezone)
            until = unambiguous_midnight_us(days[0] + timedelta(days=1), request.timezone)
            whole_day = (since, until) == (low, high)
            if (
                since is not None
                and until is not None
                and not whole_day
                and self.repository.keeps_runs(since, until)
            ):
                return await self._from_kept_runs(measure, request, low, high, since, until)
        return await self._read(measure, request, low, high)

    async def _read(self, measure: DailyMeasure, request: DailyRequest, low: int, high: int) -> _Part:
        points = await self.repository.daily(
            measure, msgspec.structs.replace(request, start_us=low, end_us=high)
        )
        return _Part(points, remembered=False, read=True)

    async def _from_kept_runs(
        self, measure: DailyMeasure, request: DailyRequest, low: int, high: int, since: int, until: int | None
    ) -> _Part:
        """[low, high) from the kept runs created in [since, until) (until None: live days).

        A state older than its days' TTL (live: STATS_CACHE_TTL, settled: STATS_SETTLED_TTL)
        reads only the versions written since its last read, minus STATS_TIME_SLACK for versions
        that become readable late; every FULL_READ_EVERY_S it is read whole again, so a version
        later than that is still counted within the hour. A state that does not fit in
        STATS_LIVE_RUNS_MAX answers this once, and its days are then re-read for a while.
        With Redis, replicas share each state's reads (app/fleet/kept_runs.py): one reads the store,
        the others catch up on what it read."""
        key = _live_key(request) if until is None else (*_live_key(request), since, until)
        tenant, store = request.tenant_id, self.run_states
        if not store.may_keep(tenant, key):
            return await self._read(measure, request, low, high)
        refresh_after = self._ttl(until)  # a day that has not settled is refreshed as live
        async with store.lock(tenant, key):
            kept = store.get(tenant, key)
            state = await self._caught_up(tenant, key, kept)
            remembered, read = state is not None, False
            if self._stale(state, since, refresh_after):
                async with self._fleet_reading(tenant, key):
                    state = await self._caught_up(tenant, key, state)  # read meanwhile elsewhere?
                    if self._stale(state, since, refresh_after):
                        state, whole = await self._read_kept(request, key, state, since, until)
                        remembered, read = remembered and not whole, True
            assert state is not None
            state.forget_before(since)
            if (read or state is not kept) and not store.keep(tenant, key, state):
                log.info("kept_runs_too_large", runs=state.size, limit=store.max_runs)
        reads = measure.sql.reads
        wanted = Wanted(
            users=measure.counts_users,
            tokens="total_tokens" in reads,
            statuses="status" in reads,
            durations="duration_us" in reads,
        )
        rows = state.rows(low, high, wanted)
        return _Part(answers.daily_points(measure, rows), remembered, read)

    def _stale(self, state: KeptRuns | None, since: int, refresh_after: float) -> bool:
        """Whether a state must be read: whole (none, too narrow, or older than an hour), or its
        newest versions (its last read is older than its days' TTL)."""
        now_s = self.wall_clock()
        return (
            self._needs_whole(state, since, now_s)
            or state is None
            or state.read_at_s is None
            or now_s - state.read_at_s >= refresh_after
        )

    @staticmethod
    def _needs_whole(state: KeptRuns | None, since: int, now_s: float) -> bool:
        return state is None or state.since_us > since or now_s - state.built_at_s >= FULL_READ_EVERY_S

    async def _read_kept(
        self, request: DailyRequest, key: Hashable, state: KeptRuns | None, since: int, until: int | None
    ) -> tuple[KeptRuns, bool]:
        """One read of the store for a state: whole, or the versions written since its last read
        (less the slack); recorded for the fleet. (state, whether it was read whole)."""
        now_s = self.wall_clock()
        whole = self._needs_whole(state, since, now_s)
        if whole or state is None:
            state = KeptRuns(since, until, built_at_s=now_s)
        state.forget_before(since)
        written_since = None if state.read_at_s is None else int(state.read_at_s) - self.settings.time_slack
        runs = await self.repository.run_rows(request, state.since_us, state.until_us, written_since)
        changed = state.merge(runs)
        state.read_at_s = now_s
        if self.shared_runs is not None:
            with suppress(SharedUnavailable):
                if whole:
                    await self.shared_runs.record_whole(request.tenant_id, key, state, runs)
                else:
                    await self.shared_runs.record_refresh(request.tenant_id, key, state, changed)
        return state, whole

    async def _caught_up(self, tenant: str, key: Hashable, state: KeptRuns | None) -> KeptRuns | None:
        if self.shared_runs is None:
            return state
        try:
            return await self.shared_runs.catch_up(tenant, key, state)
        except SharedUnavailable:
            return state

    def _fleet_reading(self, tenant: str, key: Hashable) -> AbstractAsyncContextManager[None]:
        return nullcontext() if self.shared_runs is None else self.shared_runs.reading(tenant, key)

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
            entry = (key, answer, self.settings.settled_ttl)
            await self.cache.store_many([entry], tenant=request.tenant_id, value_type=value_type)
        return answer, result


class _NoRuns(msgspec.Struct, frozen=True):
    """A cached day that has no runs (the backend lists only days with runs)."""


_NO_RUNS = _NoRuns()
