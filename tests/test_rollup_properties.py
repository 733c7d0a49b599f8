"""Answers assembled from cached days (plus one backend query) equal the reference, whatever
was cached before, for every daily measure, with some days settled and some live."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import msgspec
import psycopg
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from app.config import RedisSettings, load_settings
from app.core.measures import DAILY_MEASURES, MEASURES_BY_NAME
from app.core.service import StatsService
from app.fleet import Fleet
from app.fleet.kept_runs import SharedRuns
from app.stores.backend import Backend
from app.stores.repository import StatsRepository
from app.stores.sources import build_sources
from queries.rows import RunStateRow
from schemas.requests import STATUSES, DailyRequest
from tests import reference
from tests.db import load_history
from tests.fleets import fleets
from tests.points import answered, dated
from tests.strategies import ZONE_ANCHORS_US, histories, instants, scope_of, zones


@pytest.fixture(scope="module")
def shared_redis(redis_server: Any) -> str:
    """The session's Redis, running; each example below shares it under a prefix of its own."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    return str(redis_server.url)


@contextmanager
def replicas(
    loop: asyncio.AbstractEventLoop,
    repository: Any,
    settings: Any,
    clock: Callable[[], float],
    count: int,
    redis_url: str,
) -> Iterator[list[StatsService]]:
    """One service, or `count` replicas sharing a Redis (each its own caches and connection)."""
    if count == 1:
        yield [StatsService(repository, settings, wall_clock=clock)]
        return
    with fleets(loop, settings, redis_url, count) as shared:
        yield [StatsService(repository, settings, fleet.shared, wall_clock=clock) for fleet in shared]


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
    services: list[StatsService],
    history: list[reference.Version],
    data: st.DataObject,
    zone: str,
) -> None:
    """A sequence of overlapping ranges through one service, or through replicas taking turns
    at random: each answer equals the reference."""
    (tenant_id, app_id), trigger = data.draw(st.composite(lambda draw: scope_of(draw, history))())
    for _ in range(data.draw(st.integers(1, 4))):
        service = data.draw(st.sampled_from(services))
        start, end = sorted((data.draw(instants(zone)), data.draw(instants(zone))))
        if data.draw(st.booleans()):  # whole days, as dashboards ask
            start, end = (
                min(ZONE_ANCHORS_US[zone], key=lambda a: abs(a - start)),
                max(ZONE_ANCHORS_US[zone], key=lambda a: -abs(a - end)),
            )
            start, end = min(start, end), max(start, end)
        measure = data.draw(st.sampled_from(DAILY_MEASURES))
        # Now and then Grafana's status filter, which reads past the rollups and kept runs.
        status = data.draw(st.sampled_from(STATUSES)) if data.draw(st.integers(0, 4)) == 0 else None
        request = DailyRequest(
            tenant_id=tenant_id,
            app_id=app_id,
            triggered_from=trigger,
            timezone=zone,
            start_us=start,
            end_us=end,
            status=status,  # type: ignore[arg-type]
        )
        answer, _ = run(service.daily(measure, request))
        truth = reference.with_status(
            reference.runs_in_scope(history, tenant_id, app_id, trigger, start, end), status
        )
        expected = dated(reference.DAILY[measure.name](truth, zone))
        assert answered(measure, answer) == expected, (measure.name, start, end)


@pytest.mark.parametrize("count", [1, 2], ids=["alone", "two-replicas"])
@given(data=st.data(), zone=zones)
def test_rollup_answers_equal_the_reference(
    pg_conn: psycopg.Connection[Any],
    loop_and_repository: Any,
    shared_redis: str,
    count: int,
    data: st.DataObject,
    zone: str,
) -> None:
    loop, repository, settings = loop_and_repository
    history = data.draw(histories(zone=zone))
    load_history(pg_conn, history)
    now_us = data.draw(st.sampled_from(ZONE_ANCHORS_US[zone])) + data.draw(st.integers(0, 3 * 86_400_000_000))
    with replicas(loop, repository, settings, lambda: now_us / 1e6, count, shared_redis) as services:
        check_rollups(loop.run_until_complete, services, history, data, zone)


class _RecordingRepository:
    """The real repository, recording what it is asked to read: created-time ranges of daily
    statements, and (since, until, written since) of kept-run reads."""

    def __init__(self, repository: StatsRepository) -> None:
        self.repository = repository
        self.sources = repository.sources
        self.asked: list[tuple[int | None, int | None]] = []
        self.kept_reads: list[tuple[int, int | None, int | None]] = []
        self.bounded_reads: list[tuple[int, int | None, int]] = []  # (since, until, written until)
        self.validations: list[int] = []  # written since

    async def daily(self, measure: Any, request: DailyRequest) -> Any:
        self.asked.append((request.start_us, request.end_us))
        return await self.repository.daily(measure, request)

    async def daily_rows(self, measure: Any, request: DailyRequest) -> Any:
        self.asked.append((request.start_us, request.end_us))
        return await self.repository.daily_rows(measure, request)

    def keeps_runs(self, since_us: int, until_us: int | None) -> bool:
        return self.repository.keeps_runs(since_us, until_us)

    async def changed_days(self, request: DailyRequest, written_since_s: int, before_us: int) -> Any:
        self.validations.append(written_since_s)
        return await self.repository.changed_days(request, written_since_s, before_us)

    async def run_rows(
        self,
        request: DailyRequest,
        since_us: int,
        until_us: int | None,
        written: int | None,
        written_until_s: int | None = None,
    ) -> Any:
        if written_until_s is None:
            self.kept_reads.append((since_us, until_us, written))
        else:
            self.bounded_reads.append((since_us, until_us, written_until_s))
        return await self.repository.run_rows(request, since_us, until_us, written, written_until_s)


def test_a_grafana_range_refresh_reads_only_versions_written_since_the_last_read(
    pg_conn: psycopg.Connection[Any], loop_and_repository: Any
) -> None:
    """`now-30d..now` starts and ends mid-day. Its settled part (whole days and the edge day) is
    one statement; its live days are kept runs. A refresh reads the edge day's runs from the
    writes the edge's hint and the last validation leave possible (here: none before it, since the
    edge's runs had no version) and the live days' versions written since the last read (minus
    the slack), whatever the range's length."""
    loop, repository, settings = loop_and_repository
    load_history(pg_conn, [])
    now_s = 1_741_000_000.123456  # mid-day in UTC
    recording = _RecordingRepository(repository)
    clock = [now_s]
    service = StatsService(recording, settings, wall_clock=lambda: clock[0])  # type: ignore[arg-type]
    day_us = 86_400_000_000

    def refresh(days: int) -> str:
        end_us = int(clock[0] * 1_000_000)
        request = DailyRequest(
            tenant_id="t", app_id="a", triggered_from="app-run", timezone="UTC",
            start_us=end_us - days * day_us, end_us=end_us,
        )  # fmt: skip
        _, outcome = loop.run_until_complete(service.daily(DAILY_MEASURES[0], request))
        return str(outcome)

    assert refresh(30) == "miss"
    today = int(now_s // 86_400) * day_us
    live_from = today - day_us
    first_start = int(now_s * 1_000_000) - 30 * day_us
    assert recording.asked == [(first_start, live_from)]
    assert recording.kept_reads == [(live_from, None, None)]
    recording.asked.clear()
    recording.kept_reads.clear()
    first_read_s = clock[0]
    clock[0] += 10  # ten seconds later (live answers are cached 0 s in this module)
    assert refresh(30) == "partial"
    edge_day_end = (int(clock[0] * 1_000_000) - 30 * day_us) // day_us * day_us + day_us
    since_validated = int(first_read_s) - settings.time_slack
    assert recording.asked == []
    assert sorted(recording.kept_reads, key=str) == sorted(
        [(first_start, edge_day_end, since_validated), (live_from, None, since_validated)], key=str
    )
    assert recording.bounded_reads == []  # nothing was written before the hint's read
    for days in (7, 90):  # any length: once its days and its edge day are kept, only new versions
        refresh(days)
        clock[0] += 10
        refresh(days)
        recording.asked.clear()
        recording.kept_reads.clear()
        second_read_s = clock[0] = clock[0] + 10
        assert refresh(days) == "partial"
        assert recording.asked == []
        assert recording.kept_reads == [(live_from, None, int(second_read_s - 10) - settings.time_slack)]


@st.composite
def arrivals(draw: st.DrawFn, history: list[reference.Version], zone: str) -> tuple[list[int], list[int]]:
    """Per version, when it becomes readable: at or after its `__time__`, up to
    STATS_TIME_SLACK - 1 s late, so versions arrive out of order, duplicated, paused then
    resumed; and refresh instants (whole seconds, increasing) among those arrivals."""
    lateness = st.sampled_from((0, 1, 600, 3_599)) | st.integers(0, 3_599)
    readable = [row.time + draw(lateness) for row in history]
    moments = readable or [draw(st.sampled_from(ZONE_ANCHORS_US[zone])) // 1_000_000]
    picks = draw(st.lists(st.sampled_from(moments), min_size=2, max_size=6))
    late = (
        draw(st.lists(st.sampled_from(list(zip(history, readable, strict=True))), max_size=3))
        if history
        else []
    )
    for row, at in late:
        picks.append(draw(st.integers(row.time, at)))  # a read while the version is written, not readable
    refreshes = sorted({pick + draw(st.sampled_from((0, 0, -600, 600))) for pick in picks})
    return refreshes, readable


@pytest.mark.parametrize("count", [1, 2], ids=["alone", "two-replicas"])
@given(data=st.data(), zone=zones)
def test_kept_runs_stay_exact_while_versions_arrive_between_refreshes(
    pg_conn: psycopg.Connection[Any],
    loop_and_repository: Any,
    shared_redis: str,
    count: int,
    data: st.DataObject,
    zone: str,
) -> None:
    """One service refreshed again and again while versions arrive: each answer equals the
    reference over the versions readable at that moment, for live days kept as runs and read
    incrementally, edge days kept as runs, and states too large to keep. With two replicas
    sharing a Redis, each refresh goes to either: one replica's reads serve the other's."""
    loop, repository, settings = loop_and_repository
    history = data.draw(histories(zone=zone))
    refreshes, readable = data.draw(arrivals(history, zone))
    (tenant_id, app_id), trigger = data.draw(st.composite(lambda draw: scope_of(draw, history))())
    settings = msgspec.structs.replace(
        settings,
        settle_after=data.draw(st.sampled_from((0.0, 3_600.0, 86_400.0, 3 * 86_400.0))),
        settled_ttl=0.0,  # a settled day cached across arrivals would rightly be out of date
        live_runs_max=data.draw(st.sampled_from((2, 200_000))),  # 2: states too large to keep
    )
    clock = [0.0]
    with replicas(loop, repository, settings, lambda: clock[0], count, shared_redis) as services:
        check_refreshes(
            loop,
            pg_conn,
            services,
            data,
            history,
            refreshes,
            readable,
            (tenant_id, app_id, trigger),
            zone,
            clock,
        )


def check_refreshes(
    loop: asyncio.AbstractEventLoop,
    pg_conn: psycopg.Connection[Any],
    services: list[StatsService],
    data: st.DataObject,
    history: list[reference.Version],
    refreshes: list[int],
    readable: list[int],
    scope: tuple[str, str, str],
    zone: str,
    clock: list[float],
) -> None:
    tenant_id, app_id, trigger = scope
    day_us = 86_400_000_000
    for now_s in refreshes:
        service = data.draw(st.sampled_from(services))
        clock[0] = now_s + 0.5
        visible = [row for row, at in zip(history, readable, strict=True) if at <= now_s]
        load_history(pg_conn, visible)
        now_us = int(clock[0] * 1_000_000)
        end = now_us + data.draw(st.sampled_from((0, 0, -1, 1, -day_us // 3, day_us // 2)))
        start = end - data.draw(st.integers(1, 4 * day_us))
        request = DailyRequest(
            tenant_id=tenant_id,
            app_id=app_id,
            triggered_from=trigger,
            timezone=zone,
            start_us=start,
            end_us=end,
        )
        truth = reference.runs_in_scope(visible, tenant_id, app_id, trigger, start, end)
        for measure in DAILY_MEASURES:
            answer, _ = loop.run_until_complete(service.daily(measure, request))
            expected = dated(reference.DAILY[measure.name](truth, zone))
            assert answered(measure, answer) == expected, (measure.name, now_s, start, end)


def _version(
    run_id: str, created_s: int, time_s: int, log_version: int, status: str, tokens: int
) -> reference.Version:
    created = (reference.EPOCH + timedelta(seconds=created_s)).replace(tzinfo=None).isoformat()
    finished = status not in ("running", "paused")
    return reference.Version(
        time=time_s, id=run_id, log_version=log_version, tenant_id="t", app_id="a", workflow_id="w",
        triggered_from="app-run", type="workflow", version="draft", status=status, total_tokens=tokens,
        total_steps=1, exceptions_count=0, elapsed_time=None, created_by_role="account", created_by="u",
        created_at=created, started_at=created, finished_at=created if finished else "",
    )  # fmt: skip


def test_a_version_arriving_late_within_the_slack_is_merged(
    pg_conn: psycopg.Connection[Any], loop_and_repository: Any
) -> None:
    """A refresh reads versions written since the last read minus the slack: a version written
    before the last read but readable only after it still counts, and the latest one wins."""
    loop, repository, settings = loop_and_repository
    noon_s = 1_741_003_200  # 2025-03-03 12:00 UTC
    running = _version("r1", noon_s, noon_s, 1, "running", 0)
    finished = _version("r1", noon_s, noon_s + 60, 2, "succeeded", 500)
    clock = [noon_s + 120.0]  # the first read: the finished version is written, not yet readable
    service = StatsService(repository, settings, wall_clock=lambda: clock[0])
    request = DailyRequest(
        tenant_id="t", app_id="a", triggered_from="app-run", timezone="UTC",
        start_us=(noon_s - 43_200) * 1_000_000, end_us=(noon_s + 43_200) * 1_000_000,
    )  # fmt: skip
    tokens = DAILY_MEASURES[2]
    assert tokens.name == "daily_token_costs"
    load_history(pg_conn, [running])
    answer, _ = loop.run_until_complete(service.daily(tokens, request))
    assert [(item.date, item.token_count) for item in answer] == [("2025-03-03", 0)]
    clock[0] = noon_s + 600.0  # the finished version, written at +60 s, became readable only now
    load_history(pg_conn, [running, finished])
    answer, outcome = loop.run_until_complete(service.daily(tokens, request))
    assert [(item.date, item.token_count) for item in answer] == [("2025-03-03", 500)]
    assert outcome == "partial"


def test_today_kept_as_an_edge_day_is_refreshed_as_live(
    pg_conn: psycopg.Connection[Any], loop_and_repository: Any
) -> None:
    """When the live days' runs do not fit, today's part of a range is kept as an edge day: it
    has not settled, so it must be refreshed like a live day, not once per STATS_SETTLED_TTL."""
    loop, repository, settings = loop_and_repository
    # 2 runs a tenant; live answers and yesterday's day entry cached 30 s (of the real clock)
    settings = msgspec.structs.replace(settings, live_runs_max=4, settled_ttl=3_600.0, cache_ttl=30.0)
    noon_s = 1_741_003_200  # 2025-03-03 12:00 UTC
    day_s = 86_400
    history = [
        _version("y1", noon_s - day_s, noon_s - day_s, 1, "succeeded", 1),
        _version("y2", noon_s - day_s, noon_s - day_s, 1, "succeeded", 1),
        _version("t1", noon_s - 60, noon_s - 60, 1, "succeeded", 1),
    ]
    clock = [float(noon_s)]
    service = StatsService(repository, settings, wall_clock=lambda: clock[0])

    def runs_per_day() -> list[tuple[str, int]]:
        request = DailyRequest(
            tenant_id="t", app_id="a", triggered_from="app-run", timezone="UTC",
            start_us=(noon_s - 36 * 3600) * 1_000_000, end_us=int(clock[0] * 1_000_000),
        )  # fmt: skip
        answer, _ = loop.run_until_complete(service.daily(DAILY_MEASURES[0], request))
        return [(item.date, item.runs) for item in answer]

    load_history(pg_conn, history)
    assert runs_per_day() == [("2025-03-02", 2), ("2025-03-03", 1)]  # live days: 3 runs, too many
    clock[0] += 1
    assert runs_per_day() == [("2025-03-02", 2), ("2025-03-03", 1)]  # read; yesterday now cached
    clock[0] += 1
    assert runs_per_day() == [("2025-03-02", 2), ("2025-03-03", 1)]  # today kept as an edge day
    load_history(pg_conn, [*history, _version("t2", noon_s + 1, noon_s + 1, 1, "running", 0)])
    clock[0] += 31  # past STATS_CACHE_TTL, well before STATS_SETTLED_TTL
    assert runs_per_day() == [("2025-03-02", 2), ("2025-03-03", 2)]


def _tamper(redis_url: str, prefix: str, how: str) -> None:
    """Overwrite the fleet's record of a whole read as someone with access to Redis could: a
    well-typed row whose key does not parse, or more rows than a tenant may keep."""
    client = redis.Redis.from_url(redis_url)
    try:
        (generation,) = client.keys(f"{prefix}*:gen:*")
        (chunk,) = client.lrange(generation, 0, -1)
        rows = msgspec.msgpack.decode(chunk, type=list[RunStateRow])
        if how == "bad key":
            rows = [msgspec.structs.replace(rows[0], latest_key="x" * len(rows[0].latest_key))]
        else:
            rows = rows * 20_000  # 20,000 runs' worth, where this test's tenant may keep 1,000
        client.lset(generation, 0, msgspec.msgpack.encode(rows))
    finally:
        client.close()


@pytest.mark.parametrize(
    ("tamper", "max_rows"),
    [
        (None, 1_000),
        (None, 1),  # records as large as a tenant may keep them (one run) are replayed
        ("bad key", 1_000),
        ("too large", 1_000),
    ],
)
def test_a_replica_catches_up_on_another_replicas_reads_without_a_statement(
    pg_conn: psycopg.Connection[Any],
    loop_and_repository: Any,
    shared_redis: str,
    tamper: str | None,
    max_rows: int,
) -> None:
    """Replica A reads today's runs whole, then refreshes them; replica B, asked next, replays
    A's whole read and its refresh from Redis and answers with no statement of its own. A record
    B cannot trust (tampered with) is read from the store instead: the same answer, never an error."""
    loop, repository, settings = loop_and_repository
    settings = msgspec.structs.replace(settings, cache_ttl=60.0)
    noon_s = 1_741_003_200  # 2025-03-03 12:00 UTC
    first = [_version("r1", noon_s - 600, noon_s - 600, 1, "succeeded", 5)]
    later = [*first, _version("r2", noon_s + 100, noon_s + 100, 1, "running", 0)]
    clock = [float(noon_s)]
    recorded = [_RecordingRepository(repository), _RecordingRepository(repository)]
    prefix = f"catch-up-{uuid.uuid4().hex}:"
    redis = RedisSettings(url=shared_redis, prefix=prefix)
    replicas = [Fleet(msgspec.structs.replace(settings, redis=redis)) for _ in recorded]
    a, b = (
        StatsService(
            recording,  # type: ignore[arg-type]
            settings,
            # records as large as a tenant may keep (`max_rows` runs)
            fleet.shared._replace(kept_runs=SharedRuns(fleet.link, max_rows)),  # type: ignore[arg-type]
            wall_clock=lambda: clock[0],
        )
        for recording, fleet in zip(recorded, replicas, strict=True)
    )
    request = DailyRequest(
        tenant_id="t", app_id="a", triggered_from="app-run", timezone="UTC",
        start_us=(noon_s - 43_200) * 1_000_000, end_us=(noon_s + 43_200) * 1_000_000,
    )  # fmt: skip
    runs, terminals, interactions = (
        MEASURES_BY_NAME[name] for name in ("daily_runs", "daily_terminals", "daily_interactions")
    )
    try:
        load_history(pg_conn, first)
        loop.run_until_complete(a.daily(runs, request))  # A: the whole read
        load_history(pg_conn, later)
        clock[0] += 120  # past STATS_CACHE_TTL for the kept runs (answers are cached per measure)
        answer, _ = loop.run_until_complete(a.daily(terminals, request))  # A: a refresh
        assert [(item.date, item.terminal_count) for item in answer] == [("2025-03-03", 1)]
        assert len(recorded[0].kept_reads) == 2
        if tamper is not None:
            _tamper(shared_redis, prefix, tamper)
        answer, outcome = loop.run_until_complete(b.daily(interactions, request))  # B: catches up
        assert [(item.date, item.interactions) for item in answer] == [("2025-03-03", 2.0)]
        if tamper is not None:  # B read the store whole itself
            assert [written for *_, written in recorded[1].kept_reads] == [None]
            return
        assert (recorded[1].kept_reads, recorded[1].asked, outcome) == ([], [], "hit")
        answer, _ = loop.run_until_complete(b.daily(runs, request))  # the fleet's cached answer
        assert [(item.date, item.runs) for item in answer] == [("2025-03-03", 1)]  # as A computed it
    finally:
        for fleet in replicas:
            loop.run_until_complete(fleet.close())


def test_a_day_that_settles_under_an_open_dashboard_is_never_read(
    pg_conn: psycopg.Connection[Any], loop_and_repository: Any
) -> None:
    """A live day's kept runs become its settled value when it settles: a dashboard refreshing
    across midnight sends no statement for the day that just settled, and answers it exactly."""
    loop, repository, settings = loop_and_repository
    noon_s = 1_741_003_200  # 2025-03-03 12:00 UTC
    history = [
        _version("a", noon_s - 86_400, noon_s - 86_400, 1, "succeeded", 3),  # yesterday
        _version("b", noon_s - 3_600, noon_s - 3_600, 1, "succeeded", 5),  # today
    ]
    load_history(pg_conn, history)
    recording = _RecordingRepository(repository)
    clock = [float(noon_s)]
    service = StatsService(recording, settings, wall_clock=lambda: clock[0])  # type: ignore[arg-type]

    def tokens_per_day() -> list[tuple[str, int]]:
        end_us = int(clock[0] * 1_000_000)
        request = DailyRequest(
            tenant_id="t", app_id="a", triggered_from="app-run", timezone="UTC",
            start_us=end_us - 3 * 86_400_000_000, end_us=end_us,
        )  # fmt: skip
        answer, _ = loop.run_until_complete(service.daily(MEASURES_BY_NAME["daily_token_costs"], request))
        return [(item.date, item.token_count) for item in answer]

    assert tokens_per_day() == [("2025-03-02", 3), ("2025-03-03", 5)]
    recording.asked.clear()
    clock[0] += 86_400  # a day later: 2025-03-02 has settled (STATS_SETTLE_AFTER is a day)
    assert tokens_per_day() == [("2025-03-02", 3), ("2025-03-03", 5)]
    assert recording.asked == []  # no statement for the day that settled: the kept runs had it
