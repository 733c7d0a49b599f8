"""A migrating deployment (Dify's dual write): one history split at a random instant into
Dify's workflow_runs and the LogStore, with dual-written copies on both sides, answers every
measure exactly as the reference over the whole history: through the real repository, both
LogStore dialects and plans, on real PostgreSQL (session zone Asia/Shanghai).

The split instant is often a run's exact created time (the boundary is inclusive on the
LogStore side) and runs cluster around local midnights of the queried zone, so the day holding
the boundary usually has users on both sides."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import msgspec
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.config import Settings, load_settings
from app.core.days import from_epoch_us
from app.core.measures import DAILY_MEASURES
from app.core.service import StatsService
from app.stores.backend import Backend
from app.stores.repository import NotARun, StatsRepository
from app.stores.sources import build_sources
from schemas.requests import STATUSES, CountRequest, DailyRequest, RunDetailRequest, RunListRequest
from tests import reference
from tests.db import load_history, load_two_sources
from tests.points import answered, dated
from tests.strategies import (
    ZONE_ANCHORS_US,
    SplitHistory,
    created_ranges,
    histories,
    instants,
    scope_of,
    split_histories,
    zones,
)
from tests.test_rollup_properties import check_rollups

T = TypeVar("T")
COMBINATIONS = (("postgres", "shortcut"), ("postgres", "windowed"), ("sls", "shortcut"), ("sls", "windowed"))


class Harness:
    """One event loop, the real backends (opened once), and a repository per split instant."""

    def __init__(self, database_url: str, sls_url: str | None = None) -> None:
        """`sls_url`: where sls-dialect LogStores connect (the SLS stand-in), else the database
        itself with the Presto shims first on the search path."""
        self.loop = asyncio.new_event_loop()
        self.settings: dict[tuple[str, str], Settings] = {}
        self.logstores: dict[tuple[str, str], Backend] = {}
        for dialect, plan in COMBINATIONS:
            settings = load_settings(
                {
                    "STATS_DATABASE_URL": database_url,
                    "STATS_DIFY_DATABASE_URL": database_url,
                    "STATS_LOGSTORE_SINCE": "2025-01-01T00:00:00Z",
                    "STATS_DIALECT": dialect,
                    "STATS_QUERY_PLAN": plan,
                }
            )
            self.settings[dialect, plan] = settings
            if dialect == "sls" and sls_url is not None:
                self.logstores[dialect, plan] = Backend(sls_url, settings)
            else:
                options = "-c search_path=sls_compat,pg_catalog,public" if dialect == "sls" else ""
                self.logstores[dialect, plan] = Backend(database_url, settings, extra_options=options)
        any_settings = next(iter(self.settings.values()))
        self.workflow_runs = Backend(database_url, any_settings, dialect="postgres", name="workflow_runs")
        for backend in (*self.logstores.values(), self.workflow_runs):
            self.run(backend.open())

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def repositories(
        self, since_us: int, now_us: int | None = None
    ) -> dict[tuple[str, str], StatsRepository]:
        """Split at `since_us`; `now_us` is the wall clock (run list pages probe windows below it)."""
        since = from_epoch_us(since_us)
        clock = (lambda: now_us / 1e6) if now_us is not None else time.time
        found = {}
        for key, settings in self.settings.items():
            split = msgspec.structs.replace(settings, logstore_since=since)
            sources = build_sources(split, self.logstores[key], self.workflow_runs)
            found[key] = StatsRepository(sources, split, wall_clock=clock)
        return found

    def logstore_only(self, now_us: int) -> dict[tuple[str, str], StatsRepository]:
        found = {}
        for key, settings in self.settings.items():
            one = msgspec.structs.replace(settings, dify_database_url=None, logstore_since=None)
            sources = build_sources(one, self.logstores[key], None)
            found[key] = StatsRepository(sources, one, wall_clock=lambda: now_us / 1e6)
        return found

    def workflow_runs_only(self) -> StatsRepository:
        settings = next(iter(self.settings.values()))
        alone = msgspec.structs.replace(settings, database_url=None, logstore_since=None)
        return StatsRepository(build_sources(alone, None, self.workflow_runs), alone)

    def close(self) -> None:
        for backend in (*self.logstores.values(), self.workflow_runs):
            self.run(backend.close())
        self.loop.close()


@pytest.fixture(scope="module")
def harness(database_url: str, request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The sls-dialect LogStores go through the SLS stand-in, which enforces SLS's limits."""
    standin = None
    if os.environ.get("STATS_TEST_SLS_VIA_STANDIN", "1") != "0":
        standin = request.getfixturevalue("sls_standin")
    found = Harness(database_url, standin.url if standin is not None else None)
    appended = standin.counters["default_limit_appended"] if standin is not None else 0
    try:
        yield found
    finally:
        found.close()
    if standin is not None:  # no statement of the service relied on SLS's default LIMIT 100
        assert standin.counters["default_limit_appended"] == appended


def _load(pg_conn: psycopg.Connection[Any], split: SplitHistory) -> None:
    load_two_sources(pg_conn, split.logstore, split.workflow_runs)


def _scope(data: st.DataObject, history: list[reference.Version]) -> tuple[str, str, str]:
    (tenant_id, app_id), trigger = data.draw(st.composite(lambda draw: scope_of(draw, history))())
    return tenant_id, app_id, trigger


def check_daily_measures(
    harness: Harness,
    repositories: dict[Any, StatsRepository],
    history: list[reference.Version],
    data: st.DataObject,
    zone: str,
) -> None:
    """Every daily measure, for a drawn app, trigger and range, equals the reference."""
    tenant_id, app_id, trigger = _scope(data, history)
    start, end = data.draw(created_ranges(zone))
    status = data.draw(st.none() | st.sampled_from(STATUSES))  # Grafana's ad-hoc filter
    truth = reference.with_status(
        reference.runs_in_scope(history, tenant_id, app_id, trigger, start, end), status
    )
    request = DailyRequest(
        tenant_id=tenant_id, app_id=app_id, triggered_from=trigger, timezone=zone, start_us=start, end_us=end,
        status=status,  # type: ignore[arg-type]
    )  # fmt: skip
    for combination, repository in repositories.items():
        for measure in DAILY_MEASURES:
            answer = harness.run(repository.daily(measure, request))
            want = dated(reference.DAILY[measure.name](truth, zone))
            assert answered(measure, answer) == want, (combination, measure.name)


@given(data=st.data(), zone=zones)
def test_daily_measures_across_the_boundary(
    pg_conn: psycopg.Connection[Any], harness: Harness, data: st.DataObject, zone: str
) -> None:
    split = data.draw(split_histories(zone=zone))
    _load(pg_conn, split)
    check_daily_measures(harness, harness.repositories(split.since_us), split.history, data, zone)


@given(
    data=st.data(),
    status=st.none() | st.sampled_from(("running", "paused", "succeeded", "failed", "partial-succeeded")),
)
def test_counts_across_the_boundary(
    pg_conn: psycopg.Connection[Any], harness: Harness, data: st.DataObject, status: str | None
) -> None:
    split = data.draw(split_histories())
    _load(pg_conn, split)
    tenant_id, app_id, trigger = _scope(data, split.history)
    start, end = data.draw(created_ranges())
    want = reference.status_counts(
        reference.runs_in_scope(split.history, tenant_id, app_id, trigger, start, end), status
    )
    request = CountRequest(
        tenant_id=tenant_id, app_id=app_id, triggered_from=trigger, status=status, start_us=start, end_us=end
    )
    for combination, repository in harness.repositories(split.since_us).items():
        answer = harness.run(repository.counts(request))
        assert answer.total == sum(want.values()), combination
        if status is None:
            for name in ("running", "succeeded", "failed", "stopped", "partial-succeeded"):
                assert getattr(answer, name.replace("-", "_")) == want.get(name, 0), (combination, name)


def _now_near(data: st.DataObject, history: list[reference.Version]) -> int:
    """A wall clock at or near some run's created time, so that recent windows hold runs and
    runs created "in the future" (clock skew) exist too."""
    if not history or data.draw(st.integers(0, 3)) == 0:
        return data.draw(instants())
    created = reference.created_us(data.draw(st.sampled_from(history)))
    return created + data.draw(st.sampled_from((0, 1, -1, 3_600_000_000, -3_600_000_000, 86_400_000_000)))


def _walk(harness: Harness, repository: StatsRepository, request: RunListRequest) -> list[str]:
    """Every page as a client follows them: the last id shown is the next cursor."""
    seen: list[str] = []
    for _ in range(100):
        page = harness.run(repository.run_page(request))
        seen += [run.id for run in page.data]
        if not page.has_more:
            return seen
        assert len(page.data) == request.limit
        request = msgspec.structs.replace(request, last_id=seen[-1])
    raise AssertionError("pagination did not end")


@given(
    data=st.data(),
    limit=st.integers(1, 4),
    status=st.none() | st.sampled_from(("running", "paused", "succeeded")),
)
def test_run_list_pages_across_the_boundary(
    pg_conn: psycopg.Connection[Any], harness: Harness, data: st.DataObject, limit: int, status: str | None
) -> None:
    split = data.draw(split_histories())
    _load(pg_conn, split)
    tenant_id, app_id, trigger = _scope(data, split.history)
    truth = reference.runs_in_scope(split.history, tenant_id, app_id, trigger)
    want = [run.id for run in reference.run_list(truth, status)]
    request = RunListRequest(
        tenant_id=tenant_id, app_id=app_id, triggered_from=trigger, status=status, limit=limit, last_id=None
    )
    now_us = _now_near(data, split.history)
    for combination, repository in harness.repositories(split.since_us, now_us).items():
        assert _walk(harness, repository, request) == want, combination


@given(
    data=st.data(),
    limit=st.integers(1, 4),
    status=st.none() | st.sampled_from(("running", "paused", "succeeded")),
)
def test_run_list_pages_probing_recent_windows_on_the_logstore_alone(
    pg_conn: psycopg.Connection[Any], harness: Harness, data: st.DataObject, limit: int, status: str | None
) -> None:
    """Pages first try the runs created in the day (then 8 days) below the cursor or now."""
    history = data.draw(histories(max_runs=30, zone=data.draw(zones)))
    load_history(pg_conn, history)
    scopes = Counter(
        (run.tenant_id, run.app_id, run.triggered_from) for run in reference.latest_versions(history)
    )
    busiest = scopes.most_common(1)[0][0] if scopes else None
    tenant_id, app_id, trigger = busiest if busiest and data.draw(st.booleans()) else _scope(data, history)
    want = [
        run.id
        for run in reference.run_list(reference.runs_in_scope(history, tenant_id, app_id, trigger), status)
    ]
    request = RunListRequest(
        tenant_id=tenant_id, app_id=app_id, triggered_from=trigger, status=status, limit=limit, last_id=None
    )
    for combination, repository in harness.logstore_only(_now_near(data, history)).items():
        assert _walk(harness, repository, request) == want, combination


def _detail_matches(detail: Any, run: reference.Version) -> bool:
    finished = reference.iso_to_us(run.finished_at) // 1_000_000 if run.finished_at else None
    return (
        detail is not None
        and (detail.status, detail.total_tokens, detail.finished_at, detail.created_by)
        == (run.status, run.total_tokens, finished, run.created_by)
        and detail.created_at == reference.created_us(run) // 1_000_000
        and (detail.tenant_id, detail.app_id, detail.triggered_from)
        == (run.tenant_id, run.app_id, run.triggered_from)
    )


@given(split=split_histories(), unknown=st.uuids(version=4).map(str))
def test_run_detail_comes_from_the_side_that_owns_the_run(
    pg_conn: psycopg.Connection[Any], harness: Harness, split: SplitHistory, unknown: str
) -> None:
    _load(pg_conn, split)
    latest = reference.latest_versions(split.history)
    for combination, repository in harness.repositories(split.since_us).items():
        for run in latest:
            request = RunDetailRequest(tenant_id=run.tenant_id, app_id=run.app_id, run_id=run.id)
            assert _detail_matches(harness.run(repository.run_detail(request)), run), (combination, run.id)
            other_tenant = msgspec.structs.replace(request, tenant_id=unknown)
            assert harness.run(repository.run_detail(other_tenant)) is None
        missing = (
            RunDetailRequest(tenant_id=latest[0].tenant_id, app_id=latest[0].app_id, run_id=unknown)
            if latest
            else None
        )
        if missing is not None:
            assert harness.run(repository.run_detail(missing)) is None


@given(split=split_histories())
def test_a_cursor_from_another_app_is_refused_on_both_sides(
    pg_conn: psycopg.Connection[Any], harness: Harness, split: SplitHistory
) -> None:
    _load(pg_conn, split)
    latest = reference.latest_versions(split.history)
    for repository in harness.repositories(split.since_us).values():
        for run in latest[:3]:
            wrong_trigger = "plugin"  # never generated: the cursor is no run of this filter
            request = RunListRequest(
                tenant_id=run.tenant_id, app_id=run.app_id, triggered_from=wrong_trigger, status=None,
                limit=2, last_id=run.id,
            )  # fmt: skip
            with pytest.raises(NotARun):
                harness.run(repository.run_page(request))


@given(data=st.data(), zone=zones)
def test_day_rollups_across_the_boundary(
    pg_conn: psycopg.Connection[Any], harness: Harness, data: st.DataObject, zone: str
) -> None:
    """Cached days (either side of the boundary, or the boundary day) plus one backend query."""
    split = data.draw(split_histories(zone=zone))
    _load(pg_conn, split)
    combination = data.draw(st.sampled_from(COMBINATIONS))
    repository = harness.repositories(split.since_us)[combination]
    now_us = data.draw(st.sampled_from(ZONE_ANCHORS_US[zone])) + data.draw(st.integers(0, 3 * 86_400_000_000))
    service = StatsService(repository, repository.settings, wall_clock=lambda: now_us / 1e6)
    check_rollups(harness.run, [service], split.history, data, zone)


@given(data=st.data(), zone=zones)
def test_workflow_runs_alone_answers_every_measure(
    pg_conn: psycopg.Connection[Any], harness: Harness, data: st.DataObject, zone: str
) -> None:
    """Dify without a LogStore: workflow_runs holds the latest state of every run."""
    split = data.draw(split_histories(zone=zone))
    latest = reference.latest_versions(split.history)
    load_two_sources(pg_conn, split.logstore, latest)  # the LogStore's rows must not matter
    repository = harness.workflow_runs_only()
    check_daily_measures(harness, {"workflow_runs": repository}, split.history, data, zone)
    tenant_id, app_id, trigger = _scope(data, split.history)
    start, end = data.draw(created_ranges(zone))
    count_request = CountRequest(
        tenant_id=tenant_id, app_id=app_id, triggered_from=trigger, status=None, start_us=start, end_us=end
    )
    counts = harness.run(repository.counts(count_request))
    truth = reference.runs_in_scope(split.history, tenant_id, app_id, trigger, start, end)
    assert counts.total == len(truth)
    assert counts.succeeded == sum(run.status == "succeeded" for run in truth)
    pages = RunListRequest(
        tenant_id=tenant_id, app_id=app_id, triggered_from=trigger, status=None,
        limit=data.draw(st.integers(1, 3)), last_id=None,
    )  # fmt: skip
    everything = reference.runs_in_scope(split.history, tenant_id, app_id, trigger)
    assert _walk(harness, repository, pages) == [run.id for run in reference.run_list(everything)]
    for run in latest:
        detail = RunDetailRequest(tenant_id=run.tenant_id, app_id=run.app_id, run_id=run.id)
        assert _detail_matches(harness.run(repository.run_detail(detail)), run)


@given(data=st.data(), zone=zones)
def test_apps_are_listed_from_both_sides(
    pg_conn: psycopg.Connection[Any], harness: Harness, data: st.DataObject, zone: str
) -> None:
    split = data.draw(split_histories(zone=zone))
    _load(pg_conn, split)
    since_s = data.draw(instants(zone)) // 1_000_000 - 86_400 * 400
    repository = harness.repositories(split.since_us)["postgres", "shortcut"]
    listed = {(tenant, app) for tenant, app, _runs in harness.run(repository.apps(since_s))}
    assert listed == {(run.tenant_id, run.app_id) for run in reference.latest_versions(split.history)}
