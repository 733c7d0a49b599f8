"""Every measure, in both dialects and both plans, equals the pure-Python reference on random
histories that keep the writer invariants (real PostgreSQL, session zone Asia/Shanghai)."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core import answers
from app.core.days import day_number_to_date
from app.core.kept_runs import kept_run
from app.core.measures import DAILY_MEASURES
from queries import counts, daily, run_rows, runs
from queries.rows import CursorRow, DailyRow, RunDetailRow, RunStateRow
from queries.scope import RunScope
from schemas.requests import STATUSES
from tests import reference
from tests.db import fetch, fetch_rows, fetch_run_page, load_history
from tests.points import answered, dated
from tests.strategies import APPS, created_ranges, histories, instants, scope_of, zones

DIALECTS = ("postgres", "sls")
PLANS = ("shortcut", "windowed")
Conns = dict[str, psycopg.Connection[Any]]


def _scope(
    app: tuple[str, str],
    trigger: str | None,
    bounds: tuple[int | None, int | None],
    dialect: str,
    plan: str,
    read_at_s: int | None = None,
) -> RunScope:
    return RunScope(
        tenant_id=app[0], app_id=app[1], triggered_from=trigger, start_us=bounds[0], end_us=bounds[1],
        dialect=dialect, plan=plan, read_at_s=read_at_s,  # type: ignore[arg-type]
    )  # fmt: skip


def _read_at(history: list[reference.Version]) -> int | None:
    """The earliest instant the store can be read with every row written: local days of an open
    range are tabulated only up to it plus the slack."""
    return max((row.time for row in history), default=None)


def _expected_runs(history: list[reference.Version], app: tuple[str, str], trigger: str, bounds: Any) -> Any:
    return reference.runs_in_scope(history, app[0], app[1], trigger, bounds[0], bounds[1])


# Every sls statement here runs through the SLS stand-in: none may need its default LIMIT 100.
pytestmark = pytest.mark.usefixtures("no_statement_relies_on_the_default_limit")


@given(data=st.data(), zone=zones, status=st.none() | st.sampled_from(STATUSES))
def test_daily_measures_match_reference(
    dialect_conns: Conns, data: st.DataObject, zone: str, status: str | None
) -> None:
    """With a status (Grafana's ad-hoc filter): only the runs whose latest status it is."""
    history = data.draw(histories(zone=zone))
    app, trigger = data.draw(st.composite(lambda draw: scope_of(draw, history))())
    bounds = data.draw(created_ranges(zone))
    load_history(dialect_conns["postgres"], history)
    truth = reference.with_status(_expected_runs(history, app, trigger, bounds), status)
    for dialect in DIALECTS:
        for plan in PLANS:
            query_scope = _scope(app, trigger, bounds, dialect, plan, _read_at(history))
            for measure in DAILY_MEASURES:
                want = dated(reference.DAILY[measure.name](truth, zone))
                found = fetch_rows(
                    dialect_conns[dialect],
                    daily.daily(query_scope, zone, measure.sql, status=status),
                    DailyRow,
                )
                got = answered(measure, answers.daily_points(measure, found))
                assert got == want, (dialect, plan, measure.name)


@given(
    data=st.data(),
    status=st.none() | st.sampled_from(("running", "paused", "succeeded", "failed", "partial-succeeded")),
)
def test_status_counts_match_reference(dialect_conns: Conns, data: st.DataObject, status: str | None) -> None:
    history = data.draw(histories())
    app, trigger = data.draw(st.composite(lambda draw: scope_of(draw, history))())
    bounds = data.draw(created_ranges())
    load_history(dialect_conns["postgres"], history)
    want = reference.status_counts(_expected_runs(history, app, trigger, bounds), status)
    for dialect in DIALECTS:
        for plan in PLANS:
            query = counts.status_counts(_scope(app, trigger, bounds, dialect, plan), status)
            got = {name: count for name, count in fetch(dialect_conns[dialect], query)}
            assert got == want, (dialect, plan)


def _walk_pages(conn: psycopg.Connection[Any], scope: RunScope, limit: int, status: str | None) -> list[str]:
    """Page through the whole list as a client would: last id of a page is the next cursor."""
    seen: list[str] = []
    after = None
    for _ in range(100):
        page = fetch_run_page(conn, scope, limit + 1, status, after)
        has_more = len(page) > limit
        seen += [row.id for row in page[:limit]]
        if not has_more:
            return seen
        cursor = fetch_rows(conn, runs.run_cursor(scope, seen[-1]), CursorRow)
        assert len(cursor) == 1
        after = runs.RunCursor(created_us=cursor[0].created_us, id=seen[-1])
    raise AssertionError("pagination did not end")


@given(
    data=st.data(),
    limit=st.integers(1, 4),
    status=st.none() | st.sampled_from(("running", "paused", "succeeded")),
)
def test_run_list_pages_match_reference(
    dialect_conns: Conns, data: st.DataObject, limit: int, status: str | None
) -> None:
    history = data.draw(histories())
    app, trigger = data.draw(st.composite(lambda draw: scope_of(draw, history))())
    load_history(dialect_conns["postgres"], history)
    want = [run.id for run in reference.run_list(_expected_runs(history, app, trigger, (None, None)), status)]
    for dialect in DIALECTS:
        for plan in PLANS:
            got = _walk_pages(
                dialect_conns[dialect], _scope(app, trigger, (None, None), dialect, plan), limit, status
            )
            assert got == want, (dialect, plan)


@given(history=histories(max_runs=6), app=st.sampled_from(APPS))
def test_run_detail_is_the_latest_version(
    dialect_conns: Conns, history: list[reference.Version], app: tuple[str, str]
) -> None:
    load_history(dialect_conns["postgres"], history)
    latest = {run.id: run for run in reference.latest_versions(history)}
    for run_id, run in latest.items():
        visible = (run.tenant_id, run.app_id) == app
        for dialect in DIALECTS:
            for plan in PLANS:
                query = runs.run_detail(_scope(app, None, (None, None), dialect, plan), run_id)
                found = fetch_rows(dialect_conns[dialect], query, RunDetailRow)
                if not visible:
                    assert found == [], (dialect, plan)
                    continue
                detail = answers.run_detail(found[0])
                assert (detail.status, detail.total_tokens, detail.finished_at) == (
                    run.status,
                    run.total_tokens,
                    reference.iso_to_us(run.finished_at) // 1_000_000 if run.finished_at else None,
                ), (dialect, plan)
                assert detail.created_at == reference.created_us(run) // 1_000_000
                assert _same_elapsed(detail.elapsed_time, run), (dialect, plan, detail.elapsed_time, run)


def _same_elapsed(answered: float, run: reference.Version) -> bool:
    """The latest version's elapsed_time as written (retries tying on all else differ in it);
    when it has none, finished - started, or 0 while unfinished."""
    written = run.elapsed_time
    if written is None:
        finished = reference.iso_to_us(run.finished_at) if run.finished_at else None
        written = 0.0 if finished is None else (finished - reference.iso_to_us(run.started_at)) / 1e6
        return math.isclose(answered, written, abs_tol=1e-6)
    return answered == written or (math.isnan(answered) and math.isnan(written))


@given(data=st.data(), zone=zones)
def test_run_rows_are_each_runs_latest_version_written_since(
    dialect_conns: Conns, data: st.DataObject, zone: str
) -> None:
    """The rows kept for live days: per run created in the range with a version written since
    the instant, its local day, created time, user, and the latest of those versions' tokens,
    duration and status (carried by its key)."""
    history = data.draw(histories(zone=zone))
    app, trigger = data.draw(st.composite(lambda draw: scope_of(draw, history))())
    start = data.draw(instants(zone))
    end = data.draw(st.none() | instants(zone).filter(lambda end: end > start))
    written_since = data.draw(st.none() | st.sampled_from([row.time for row in history] or [0]))
    load_history(dialect_conns["postgres"], history)
    since = [row for row in history if written_since is None or row.time >= written_since]
    want = sorted(
        (run.id, reference.local_date(reference.created_us(run), zone), reference.created_us(run),
         run.created_by, run.total_tokens, reference.duration_us(run), run.status)
        for run in _expected_runs(since, app, trigger, (start, end))
    )  # fmt: skip
    for dialect in DIALECTS:
        query = run_rows.run_rows(
            msgspec.structs.replace(
                _scope(app, trigger, (start, end), dialect, "shortcut", _read_at(history)),
                written_since_s=written_since,
            ),
            zone,
        )
        found = fetch_rows(dialect_conns[dialect], query, RunStateRow)
        kept = [(row, kept_run(row.created_us, row.created_by, row.latest_key)) for row in found]
        got = [
            (row.id, day_number_to_date(row.day), run.created_us, run.created_by, run.tokens, run.duration_us,
             run.status)
            for row, run in kept
        ]  # fmt: skip
        assert got == want, dialect
