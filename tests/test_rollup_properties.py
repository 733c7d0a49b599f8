"""Answers assembled from cached days (plus one backend query) equal the reference, whatever
was cached before, for every daily measure, with some days settled and some live."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.backend import Backend
from app.cache import AnswerCache
from app.config import load_settings
from app.measures import DAILY_MEASURES
from app.repository import StatsRepository
from app.service import StatsService
from app.sources import build_sources
from schemas.requests import DailyRequest
from tests import reference
from tests.db import load_history
from tests.strategies import ZONE_ANCHORS_US, histories, instants, scope_of, zones


@pytest.fixture(scope="module")
def loop_and_repository(
    database_url: str,
) -> Iterator[tuple[asyncio.AbstractEventLoop, StatsRepository, Any]]:
    settings = load_settings({"STATS_DATABASE_URL": database_url, "STATS_CACHE_TTL": "0"})
    loop = asyncio.new_event_loop()
    backend = Backend(database_url, settings)
    loop.run_until_complete(backend.open())
    try:
        yield loop, StatsRepository(build_sources(settings, backend, None), settings), settings
    finally:
        loop.run_until_complete(backend.close())
        loop.close()


def check_rollups(
    run: Callable[[Coroutine[Any, Any, Any]], Any],
    repository: StatsRepository,
    settings: Any,
    history: list[reference.Version],
    data: st.DataObject,
    zone: str,
) -> None:
    """A sequence of overlapping ranges through one service: each answer equals the reference."""
    (tenant_id, app_id), trigger = data.draw(st.composite(lambda draw: scope_of(draw, history))())
    now_us = data.draw(st.sampled_from(ZONE_ANCHORS_US[zone])) + data.draw(st.integers(0, 3 * 86_400_000_000))
    service = StatsService(repository, AnswerCache(1000, 600), settings, wall_clock=lambda: now_us / 1e6)
    for _ in range(data.draw(st.integers(1, 4))):
        start, end = sorted((data.draw(instants(zone)), data.draw(instants(zone))))
        if data.draw(st.booleans()):  # whole days, as dashboards ask
            start, end = (
                min(ZONE_ANCHORS_US[zone], key=lambda a: abs(a - start)),
                max(ZONE_ANCHORS_US[zone], key=lambda a: -abs(a - end)),
            )
            start, end = min(start, end), max(start, end)
        measure = data.draw(st.sampled_from(DAILY_MEASURES))
        request = DailyRequest(
            tenant_id=tenant_id,
            app_id=app_id,
            triggered_from=trigger,
            timezone=zone,
            start_us=start,
            end_us=end,
        )
        answer, _ = run(service.daily(measure, request))
        truth = reference.runs_in_scope(history, tenant_id, app_id, trigger, start, end)
        expected = [(day.isoformat(), value) for day, value in reference.DAILY[measure.name](truth, zone)]
        got = [(item.date, getattr(item, measure.answer_field)) for item in answer]
        assert got == expected, (measure.name, start, end)


@given(data=st.data(), zone=zones)
def test_rollup_answers_equal_the_reference(
    pg_conn: psycopg.Connection[Any], loop_and_repository: Any, data: st.DataObject, zone: str
) -> None:
    loop, repository, settings = loop_and_repository
    history = data.draw(histories(zone=zone))
    load_history(pg_conn, history)
    check_rollups(loop.run_until_complete, repository, settings, history, data, zone)


class _RecordingRepository:
    """The real repository, recording the created-time ranges it is asked for."""

    def __init__(self, repository: StatsRepository) -> None:
        self.repository = repository
        self.sources = repository.sources
        self.asked: list[tuple[int | None, int | None]] = []

    async def daily(self, measure: Any, request: DailyRequest) -> Any:
        self.asked.append((request.start_us, request.end_us))
        return await self.repository.daily(measure, request)


def test_a_grafana_range_reads_only_its_edges_once_its_days_are_cached(
    pg_conn: psycopg.Connection[Any], loop_and_repository: Any
) -> None:
    """`now-30d..now` starts and ends mid-day: its 29 whole interior days come from the cache."""
    loop, repository, settings = loop_and_repository
    load_history(pg_conn, [])
    now_us = 1_741_000_000_123_456  # mid-day in UTC
    recording = _RecordingRepository(repository)
    clock = [now_us / 1e6]
    service = StatsService(recording, AnswerCache(1000, 600), settings, wall_clock=lambda: clock[0])  # type: ignore[arg-type]
    day_us = 86_400_000_000

    def refresh(end_us: int) -> str:
        request = DailyRequest(
            tenant_id="t", app_id="a", triggered_from="app-run", timezone="UTC",
            start_us=end_us - 30 * day_us, end_us=end_us,
        )  # fmt: skip
        _, outcome = loop.run_until_complete(service.daily(DAILY_MEASURES[0], request))
        return str(outcome)

    assert refresh(now_us) == "miss"
    recording.asked.clear()
    assert refresh(now_us + 10_000_000) == "partial"  # ten seconds later
    assert len(recording.asked) == 2
    # The two partial edge days, and yesterday, still live (this module caches live days 0 s).
    assert sum(high - low for low, high in recording.asked) == 2 * day_us
