"""Settled days are read once and validated, and stay exact: a run paused on a settled day and
resumed or finished any time later (weeks later) changes that day's numbers at the next
validation, for every daily measure, both plans and both dialects (sls through the SLS stand-in),
one service or two replicas sharing a Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import msgspec
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.config import load_settings
from app.core.cache import NoSharedAnswers
from app.core.measures import DAILY_MEASURES
from app.core.service import StatsService
from app.stores.backend import Backend
from app.stores.repository import StatsRepository
from app.stores.sources import build_sources
from schemas.requests import DailyRequest
from tests import reference
from tests.db import load_history
from tests.fleets import fleets
from tests.points import answered, dated
from tests.strategies import ZONE_ANCHORS_US, histories, scope_of, zones

DAY_S = 86_400
SLACK_S = 3_600
VALIDATE_EVERY_S = 60.0  # STATS_SETTLED_TTL here: every moment below is at least this far apart
STORES = [("postgres", "shortcut"), ("postgres", "windowed"), ("sls", "shortcut"), ("sls", "windowed")]


@pytest.fixture(scope="module")
def repositories(
    database_url: str, sls_standin: Any
) -> Iterator[tuple[asyncio.AbstractEventLoop, dict[Any, Any]]]:
    """A repository per (dialect, plan): sls statements go through the SLS stand-in."""
    loop = asyncio.new_event_loop()
    made: dict[Any, Any] = {}
    backends = []
    for dialect, plan in STORES:
        url = database_url if dialect == "postgres" else sls_standin.url
        env = {"STATS_DATABASE_URL": url, "STATS_DIALECT": dialect, "STATS_QUERY_PLAN": plan}
        store_settings = load_settings(
            {**env, "STATS_CACHE_TTL": "0", "STATS_SETTLED_TTL": str(VALIDATE_EVERY_S)}
        )
        backend = Backend(url, store_settings)
        loop.run_until_complete(backend.open())
        backends.append(backend)
        made[(dialect, plan)] = (
            StatsRepository(build_sources(store_settings, backend, None), store_settings),
            store_settings,
        )
    try:
        yield loop, made
    finally:
        for backend in backends:
            loop.run_until_complete(backend.close())
        loop.close()


@st.composite
def late_histories(draw: st.DrawFn, zone: str) -> tuple[list[reference.Version], set[int]]:
    """A history where some runs' later versions (a resume after a pause, the finish, a retry)
    are written days or weeks after the run was created, in their log_version order; and the
    positions of those late versions."""
    history = draw(histories(zone=zone))
    by_run: dict[str, list[int]] = {}
    for position, row in enumerate(history):
        by_run.setdefault(row.id, []).append(position)
    moved = list(history)
    late: set[int] = set()
    for positions in by_run.values():
        if len(positions) < 2 or draw(st.integers(0, 2)) == 0:
            continue
        ordered = sorted(positions, key=lambda at: (history[at].log_version, history[at].time))
        tail = ordered[draw(st.integers(1, len(ordered) - 1)) :]
        shift = draw(st.sampled_from((2, 6, 21))) * DAY_S + draw(st.integers(0, DAY_S))
        for at in tail:
            moved[at] = msgspec.structs.replace(history[at], time=history[at].time + shift)
            late.add(at)
    return moved, late


@st.composite
def moments(
    draw: st.DrawFn, history: list[reference.Version], late: set[int], settle_after_s: float
) -> tuple[list[int], list[int]]:
    """Per version when it becomes readable (up to the slack late), and the instants answers are
    asked at, at least a validation interval apart: once the days of the early versions have
    settled, just after each late version arrives, and when everything has."""
    readable = [row.time + draw(st.sampled_from((0, 1, 600, SLACK_S - 1))) for row in history]
    early = [at for position, at in enumerate(readable) if position not in late]
    settled = max(early, default=0) + int(settle_after_s) + DAY_S + draw(st.integers(0, DAY_S))
    wanted = [
        settled,
        *(at + draw(st.sampled_from((0, 1, 90))) for position, at in enumerate(readable) if position in late),
        max(readable, default=0) + DAY_S,
    ]
    asked: list[int] = []
    for moment in sorted(wanted):
        if moment > 0 and (not asked or moment >= asked[-1] + VALIDATE_EVERY_S):
            asked.append(moment)
    return asked, readable


@pytest.mark.parametrize("replicas", [1, 2], ids=["alone", "two-replicas"])
@given(data=st.data(), zone=zones)
@settings(max_examples=40)
def test_settled_days_stay_exact_across_validations(
    pg_conn: psycopg.Connection[Any],
    repositories: Any,
    redis_server: Any,
    replicas: int,
    data: st.DataObject,
    zone: str,
) -> None:
    loop, made = repositories
    store = data.draw(st.sampled_from(STORES))
    repository, store_settings = made[store]
    store_settings = msgspec.structs.replace(
        store_settings,
        settle_after=data.draw(st.sampled_from((0.0, 3_600.0, float(DAY_S), 3.0 * DAY_S))),
        live_runs_max=data.draw(st.sampled_from((2, 200_000))),  # 2: live states too large to keep
    )
    history, late = data.draw(late_histories(zone))
    asked, readable = data.draw(moments(history, late, store_settings.settle_after))
    (tenant_id, app_id), trigger = data.draw(st.composite(lambda draw: scope_of(draw, history))())
    clock = [0.0]
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    with fleets(loop, store_settings, str(redis_server.url), replicas) as shared:
        # The fleet's answers are fresh for their TTL on Redis's clock, which this test's clock
        # does not move: they are left out (settled days and kept runs are shared by their own
        # clocks, which are this test's).
        services = [
            StatsService(
                repository,
                store_settings,
                fleet.shared._replace(answers=NoSharedAnswers()),
                wall_clock=lambda: clock[0],
                cache_clock=lambda: clock[0],
            )
            for fleet in shared
        ]
        for now_s in asked:
            clock[0] = now_s + 0.25
            visible = [row for row, at in zip(history, readable, strict=True) if at <= now_s]
            load_history(pg_conn, visible)
            anchors = ZONE_ANCHORS_US[zone]
            now_us = int(clock[0] * 1_000_000)
            whole = (anchors[0] - DAY_S * 1_000_000, anchors[-1] + 2 * DAY_S * 1_000_000)  # every run
            start, end = data.draw(
                st.sampled_from([whole, (now_us - 30 * DAY_S * 1_000_000, now_us)])
                | st.tuples(st.sampled_from(anchors), st.sampled_from([*anchors, now_us]))
            )
            start, end = min(start, end), max(start, end)
            request = DailyRequest(
                tenant_id=tenant_id, app_id=app_id, triggered_from=trigger, timezone=zone,  # type: ignore[arg-type]
                start_us=start, end_us=end,
            )  # fmt: skip
            truth = reference.runs_in_scope(visible, tenant_id, app_id, trigger, start, end)
            service = data.draw(st.sampled_from(services))
            for measure in DAILY_MEASURES:
                answer, _ = loop.run_until_complete(service.daily(measure, request))
                expected = dated(reference.DAILY[measure.name](truth, zone))
                assert answered(measure, answer) == expected, (store, measure.name, now_s, start, end)
