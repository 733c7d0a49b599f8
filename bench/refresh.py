"""A Grafana dashboard refreshing `now-Nd..now` through the service (StatsService, day rollups),
for a daily measure (daily runs; runs by status and durations, whose kept runs carry more).

The wall clock starts at the dataset's "now" plus a non-round offset, so neither edge of the
range is a midnight: the range starts inside a day and ends inside today, as Grafana asks. The
first request fills the cache (reported as cold). Each refresh then moves the wall clock on by
the live cache TTL (STATS_CACHE_TTL) and asks the range again with the new now: the live days'
entries have expired and the range is a new one, so every refresh is a real one, never an
answer-cache hit (asserted: the outcome is `partial`). The answer cache runs on the same clock.

The backend is wrapped to note every statement a refresh sends, its time and the rows it got.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, TypeVar

import msgspec

from app.config import load_settings
from app.core.measures import DailyMeasure
from app.core.service import StatsService
from app.demo import demo_apps
from app.stores.backend import Backend
from app.stores.repository import StatsRepository
from app.stores.sources import build_sources
from queries.scope import Query
from schemas.requests import DailyRequest

Row = TypeVar("Row")
US = 1_000_000
WALL_CLOCK_OFFSET_S = 6 * 3600 + 17 * 60 + 23  # dataset now + 6 h 17 min 23 s
REFRESHES = 7
RANGES_DAYS = (90, 7)


class SentStatement(msgspec.Struct):
    query: Query
    ms: float
    rows: int


class RecordingBackend(Backend):
    """The service's backend, noting each statement it runs (for the benchmark only)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[SentStatement] = []

    async def fetch(self, query: Query, row_type: type[Row]) -> list[Row]:
        started = time.perf_counter()
        rows = await super().fetch(query, row_type)
        self.sent.append(SentStatement(query, (time.perf_counter() - started) * 1000, len(rows)))
        return rows


class SteppedClock:
    """A wall clock that moves only when told to (the service's and the cache's)."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


async def refresh_range(url: str, now_s: int, days: int, measure: DailyMeasure) -> dict[str, Any]:
    """Cold request, then REFRESHES refreshes of `now-{days}d..now` of `measure`, in UTC."""
    settings = load_settings({"STATS_DATABASE_URL": url})
    clock = SteppedClock(now_s + WALL_CLOCK_OFFSET_S)
    backend = RecordingBackend(url, settings)
    await backend.open()
    service = StatsService(
        StatsRepository(build_sources(settings, backend, None), settings, wall_clock=clock),
        settings,
        wall_clock=clock,
        cache_clock=clock,
    )
    app = demo_apps()[0]

    async def ask() -> tuple[float, str]:
        end_us = int(clock() * US)
        request = DailyRequest(
            tenant_id=app.tenant_id, app_id=app.app_id, triggered_from="app-run", timezone="UTC",
            start_us=end_us - days * 86_400 * US, end_us=end_us,
        )  # fmt: skip
        backend.sent.clear()
        started = time.perf_counter()
        _, outcome = await service.daily(measure, request)
        return (time.perf_counter() - started) * 1000, outcome

    try:
        cold_ms, cold_outcome = await ask()
        cold_statements = len(backend.sent)
        refreshes = []
        for _ in range(REFRESHES):
            clock.now_s += settings.cache_ttl
            ms, outcome = await ask()
            assert outcome == "partial", f"a refresh must re-read the live days, not be a {outcome}"
            refreshes.append((ms, list(backend.sent)))
    finally:
        await backend.close()
    refresh_ms = statistics.median(ms for ms, _ in refreshes)
    median_refresh = sorted(refreshes, key=lambda refresh: refresh[0])[len(refreshes) // 2]
    return {
        "days": days,
        "cold_ms": round(cold_ms, 1),
        "cold_outcome": cold_outcome,
        "cold_statements": cold_statements,
        "refresh_ms": round(refresh_ms, 1),
        "refresh_ms_all": [round(ms, 1) for ms, _ in refreshes],
        "statements": round(statistics.median(len(s) for _, s in refreshes), 1),
        "rows_back": round(statistics.median(sum(sent.rows for sent in s) for _, s in refreshes), 1),
        "median_refresh_statements": [
            {"ms": round(one.ms, 1), "rows_back": one.rows, "sql": one.query.sql, "params": one.query.params}
            for one in median_refresh[1]
        ],
    }


async def measure(url: str, now_s: int, dify_windowed_90d_ms: float, measure: DailyMeasure) -> dict[str, Any]:
    by_days = {days: await refresh_range(url, now_s, days, measure) for days in RANGES_DAYS}
    long, short = by_days[90], by_days[7]
    return {
        "measure": measure.name,
        "wall_clock_offset_s": WALL_CLOCK_OFFSET_S,
        "step_s": load_settings({"STATS_DATABASE_URL": url}).cache_ttl,
        "refreshes": REFRESHES,
        "ranges": [long, short],
        "long_over_short": round(long["refresh_ms"] / short["refresh_ms"], 2),
        "dify_windowed_90d_ms": round(dify_windowed_90d_ms, 1),
        "dify_over_refresh_90d": round(dify_windowed_90d_ms / long["refresh_ms"], 1),
    }
