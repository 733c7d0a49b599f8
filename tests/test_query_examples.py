"""Hand-checked answers for every measure on tests/examples.py, in both dialects and plans."""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg
import pytest

from app import answers
from app.measures import DAILY_MEASURES, MEASURES_BY_NAME
from queries import counts, daily, run_rows, runs
from queries.rows import CursorRow, DailyRow, RunDetailRow, RunStateRow, StatusCountRow
from queries.runs import RunCursor
from queries.scope import RunScope
from schemas.runs import RunCounts
from tests import examples
from tests.db import fetch, fetch_rows, fetch_run_page, load_history

MAR_1_SHANGHAI_US = 1_740_758_400_000_000  # 2025-03-01T00:00:00+08:00
MAR_3_SHANGHAI_US = 1_740_931_200_000_000  # 2025-03-03T00:00:00+08:00


# Every sls statement here runs through the SLS stand-in: none may need its default LIMIT 100.
pytestmark = pytest.mark.usefixtures("no_statement_relies_on_the_default_limit")


@pytest.fixture(params=[(d, p) for d in ("postgres", "sls") for p in ("shortcut", "windowed")], ids=str)
def run(request: pytest.FixtureRequest, dialect_conns: dict[str, psycopg.Connection[Any]]) -> Any:
    dialect, plan = request.param
    conn = dialect_conns[dialect]
    load_history(dialect_conns["postgres"], examples.history())

    def scope(
        trigger: str | None = "app-run",
        tenant: str = examples.T,
        start: int | None = None,
        end: int | None = None,
    ) -> RunScope:
        return RunScope(
            tenant_id=tenant,
            app_id=examples.A,
            triggered_from=trigger,
            start_us=start,
            end_us=end,
            dialect=dialect,
            plan=plan,
        )

    return conn, scope


def _daily(run: Any, name: str, scope: RunScope, zone: str) -> list[tuple[str, Any]]:
    conn, _ = run
    measure = MEASURES_BY_NAME[name]
    found = fetch_rows(conn, daily.daily(scope, zone, measure.sql), DailyRow)
    return [
        (point.date, getattr(point, measure.answer_field)) for point in answers.daily_points(measure, found)
    ]


def test_a_run_whose_created_time_does_not_parse_is_skipped_not_fatal(
    run: Any, pg_conn: psycopg.Connection[Any]
) -> None:
    """One unparsable value fails a whole statement on SLS: such a run is in no range instead."""
    conn, scope = run
    broken = examples.history()
    broken = [
        msgspec.structs.replace(row, created_at="not a time", started_at="03/01/2025")
        if row.id == examples.R3
        else row
        for row in broken
    ]
    load_history(pg_conn, broken)
    everything = _daily(run, "daily_runs", scope(), "UTC")
    assert everything == [("2025-03-01", 3)]  # r3 is left out, the others counted
    for measure in DAILY_MEASURES:  # and each statement says so, for the app to report it
        rows = fetch_rows(conn, daily.daily(scope(), "UTC", measure.sql), DailyRow)
        skipped = [(row.unparsed_runs, row.unparsed_example) for row in rows if row.day is None]
        assert skipped == [(1, examples.R3)], measure.name
    found = answers.run_counts(fetch_rows(conn, counts.status_counts(scope(), None), StatusCountRow))
    assert found.total == 3


@pytest.mark.parametrize("impossible", ["2025-02-30T10:00:00", "2025-13-01T00:00:00Z", "2025-03-01T25:00:00"])
@pytest.mark.parametrize("plan", ["shortcut", "windowed"])
def test_an_impossible_date_of_iso_shape_is_skipped_on_sls_not_fatal(
    sls_conn: psycopg.Connection[Any], pg_conn: psycopg.Connection[Any], plan: str, impossible: str
) -> None:
    """Such a text passes the shape check; without TRY(...) around the parse, SLS would fail every
    statement that reads the app's created times, for as long as the run is kept."""
    broken = [
        msgspec.structs.replace(row, created_at=impossible, started_at=impossible)
        if row.id == examples.R3
        else row
        for row in examples.history()
    ]
    load_history(pg_conn, broken)
    scope = RunScope(
        tenant_id=examples.T, app_id=examples.A, triggered_from="app-run", dialect="sls", plan=plan
    )  # type: ignore[arg-type]
    for measure in DAILY_MEASURES:
        rows = fetch_rows(sls_conn, daily.daily(scope, "UTC", measure.sql), DailyRow)
        assert [(row.unparsed_runs, row.unparsed_example) for row in rows if row.day is None] == [
            (1, examples.R3)
        ]
    found = answers.run_counts(fetch_rows(sls_conn, counts.status_counts(scope, None), StatusCountRow))
    assert found.total == 3
    assert examples.R3 not in [row.id for row in fetch_run_page(sls_conn, scope, 10, None, None)]
    assert fetch(sls_conn, runs.run_cursor(scope, examples.R3)) == []
    if plan == "shortcut":
        assert examples.R3 not in [
            row.id for row in fetch_rows(sls_conn, run_rows.run_rows(scope, "UTC"), RunStateRow)
        ]
    detail = fetch_rows(
        sls_conn,
        runs.run_detail(msgspec.structs.replace(scope, triggered_from=None), examples.R3),
        RunDetailRow,
    )
    assert [row.id for row in detail] == [examples.R3]  # unbounded: its detail is still there


def test_daily_measures_by_eye(run: Any) -> None:
    scope = run[1]
    shanghai = scope(start=MAR_1_SHANGHAI_US, end=MAR_3_SHANGHAI_US)
    assert _daily(run, "daily_runs", shanghai, "Asia/Shanghai") == [("2025-03-01", 1), ("2025-03-02", 3)]
    assert _daily(run, "daily_terminals", shanghai, "Asia/Shanghai") == [("2025-03-01", 1), ("2025-03-02", 2)]
    # r1's latest (retried) finished version has 25 tokens; r3 and r4 count their current tokens.
    assert _daily(run, "daily_token_costs", shanghai, "Asia/Shanghai") == [
        ("2025-03-01", 25),
        ("2025-03-02", 12),
    ]
    # 2025-03-02: alice 1 run, bob 2 runs -> 3 runs / 2 users = 1.5
    assert _daily(run, "daily_interactions", shanghai, "Asia/Shanghai") == [
        ("2025-03-01", 1.0),
        ("2025-03-02", 1.5),
    ]
    assert _daily(run, "daily_runs", scope(), "UTC") == [("2025-03-01", 4)]
    # The end bound is exclusive at microsecond precision: r1 (15:59:59.999999Z) is in, r2 is out.
    just_r1 = scope(start=MAR_1_SHANGHAI_US, end=1_740_844_800_000_000)
    assert _daily(run, "daily_runs", just_r1, "UTC") == [("2025-03-01", 1)]


def test_status_counts_by_eye(run: Any) -> None:
    conn, scope = run
    found = answers.run_counts(fetch_rows(conn, counts.status_counts(scope(), None), StatusCountRow))
    assert found == RunCounts(total=4, running=1, succeeded=1, failed=1, stopped=0, partial_succeeded=0)
    assert dict(fetch(conn, counts.status_counts(scope(), "paused"))) == {"paused": 1}  # r4
    assert dict(fetch(conn, counts.status_counts(scope(tenant=examples.U), None))) == {
        "succeeded": 1
    }  # r6 only


def test_run_list_and_detail_by_eye(run: Any) -> None:
    conn, scope = run
    page = answers.run_summaries(fetch_run_page(conn, scope(), 3, None, None))
    assert [s.id for s in page] == [examples.R4, examples.R3, examples.R2]
    assert (page[2].status, page[2].finished_at, page[2].elapsed_time) == ("failed", 1740844801, 1.5)
    assert (page[0].status, page[0].finished_at, page[0].elapsed_time) == ("paused", None, 0.0)
    cursor = fetch_rows(conn, runs.run_cursor(scope(), examples.R2), CursorRow)
    after = RunCursor(created_us=cursor[0].created_us, id=examples.R2)
    rest = [row.id for row in fetch_run_page(conn, scope(), 3, None, after)]
    assert rest == [examples.R1]
    assert fetch(conn, runs.run_cursor(scope(trigger="debugging"), examples.R2)) == []

    def detail_of(run_id: str) -> list[RunDetailRow]:
        return fetch_rows(conn, runs.run_detail(scope(trigger=None), run_id), RunDetailRow)

    detail = answers.run_detail(detail_of(examples.R1)[0])
    assert (detail.status, detail.total_tokens, detail.created_at, detail.error) == (
        "succeeded",
        25,
        1740844799,
        None,
    )
    assert detail.outputs == {} and detail.triggered_from == "app-run"
    failed = answers.run_detail(detail_of(examples.R2)[0])
    assert failed.error == "boom"
    assert detail_of(examples.R6) == []  # tenant U's run


def test_check_sls_runs_every_sls_query_against_the_stand_in(
    sls_standin: Any, pg_conn: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """`make check-sls`'s own code, pointed at the SLS stand-in instead of a real project: every
    kind of sls statement runs, SLS's limits hold, and both plans agree on a recent demo history."""
    from app.config import load_settings
    from app.demo import copy_rows, generate_rows
    from app.live_check import check_sls

    pg_conn.execute("TRUNCATE workflow_execution")
    copy_rows(pg_conn, generate_rows(400, days=5))
    sls_standin.counters.reset()
    settings = {
        "STATS_DATABASE_URL": sls_standin.url,
        "STATS_DIALECT": "sls",
        "ALIYUN_SLS_LOGSTORE_TTL": "30",
    }
    assert check_sls(load_settings(settings)) == 0
    printed = capsys.readouterr().out
    assert "check-sls: OK" in printed
    for name in (
        "connection check",
        "schema probe",
        "field counts",
        *(measure.name for measure in DAILY_MEASURES),
        "daily_runs in a DST zone",
        "daily_runs, open start",
        "day_users",
        "status_counts",
        "run_rows (kept runs, first read)",
        "run_rows (a refresh)",
        "run_page keys (shortcut)",
        "run_page rows (shortcut)",
        "run_page (windowed)",
        "run_cursor",
        "run_detail",
        "apps_with_runs",
        "app_activity (shortcut)",
        "app_activity (windowed)",
        "paging",
        "truncation",
    ):
        assert f"  {name} " in printed, name
    assert "days in pages of 2: same" in printed
    assert " rows  complete" in printed and "FAILED" not in printed
    counters = sls_standin.counters
    assert counters["refused_statement"] == counters["default_limit_appended"] == 0
    open_start = [seen.sql for seen in counters.statements() if "__time__ > 0" in seen.sql]
    assert open_start == []  # with a retention, no statement reads the whole logstore


def test_open_ended_ranges_cost_one_zone_table_not_one_per_start() -> None:
    """A range without an end used to tabulate the zone's offsets from its start to 2100 on every
    request (~130 ms of CPU each, and a new start missed the cache): now a slice of one table."""
    from queries.timezones import _zone_table, offset_segments

    _zone_table.cache_clear()
    for day in range(30):
        segments = offset_segments("America/Chicago", (157_766_400 + day * 86_400) * 1_000_000, None)
        assert segments[0][0] == 0 and len(segments) > 200  # every DST change from 1975 to 2100
    assert _zone_table.cache_info().misses == 1
    bounded = offset_segments("America/Chicago", 1_741_400_000_000_000, 1_741_600_000_000_000)
    assert [offset for _, offset in bounded] == [-6 * 3600 * 10**6, -5 * 3600 * 10**6]  # 2025-03-09


@pytest.fixture
def nullable_numbers(pg_conn: psycopg.Connection[Any]) -> Any:
    """log_version and total_tokens may be NULL for the test (SLS answers NULL for a field it
    cannot read); the constraints come back afterwards."""
    columns = ("log_version", "total_tokens")
    for column in columns:
        pg_conn.execute(f"ALTER TABLE workflow_execution ALTER COLUMN {column} DROP NOT NULL")  # type: ignore[arg-type]
    try:
        yield pg_conn
    finally:
        pg_conn.execute("TRUNCATE workflow_execution")
        for column in columns:
            pg_conn.execute(f"ALTER TABLE workflow_execution ALTER COLUMN {column} SET NOT NULL")  # type: ignore[arg-type]


def test_a_null_number_sorts_as_the_lowest_in_every_plan_and_dialect(
    nullable_numbers: psycopg.Connection[Any], dialect_conns: dict[str, psycopg.Connection[Any]]
) -> None:
    """PostgreSQL puts NULLs first in a descending order, Presto last: every order that may meet a
    NULL says which, and the latest-version key reads NULL as the lowest value, so all agree."""
    created = {"created_at": "2025-03-01T10:00:00", "started_at": "2025-03-01T10:00:00"}
    t = 1_740_823_200
    rows = [
        # r1: two finished versions tie on log_version and __time__; one has no tokens
        examples._version(
            examples.R1, t + 60, 10, "succeeded", 5, finished_at="2025-03-01T10:01:00", **created
        ),
        examples._version(
            examples.R1, t + 60, 10, "succeeded", 0, finished_at="2025-03-01T10:01:00", **created
        ),
        # r2: a version without a log_version is older than any with one
        examples._version(
            examples.R2, t + 30, 7, "succeeded", 3, finished_at="2025-03-01T10:00:30", **created
        ),
        examples._version(examples.R2, t + 5, 0, "running", 0, **created),
    ]
    load_history(nullable_numbers, rows)
    nullable_numbers.execute(
        f"UPDATE workflow_execution SET total_tokens = NULL WHERE id = '{examples.R1}' AND total_tokens = 0"
    )  # type: ignore[arg-type]
    nullable_numbers.execute(
        f"UPDATE workflow_execution SET log_version = NULL WHERE id = '{examples.R2}' AND status = 'running'"
    )  # type: ignore[arg-type]
    tokens = MEASURES_BY_NAME["daily_token_costs"]
    for dialect in ("postgres", "sls"):
        for plan in ("shortcut", "windowed"):
            scope = RunScope(
                tenant_id=examples.T, app_id=examples.A, triggered_from="app-run", dialect=dialect, plan=plan
            )  # type: ignore[arg-type]
            conn = dialect_conns[dialect]
            day = fetch_rows(conn, daily.daily(scope, "UTC", tokens.sql), DailyRow)
            assert [int(row.tokens) for row in day if row.day is not None] == [8], (dialect, plan)
            assert dict(fetch(conn, counts.status_counts(scope, None))) == {"succeeded": 2}, (dialect, plan)
            detail_scope = msgspec.structs.replace(scope, triggered_from=None)
            for run_id, want in ((examples.R1, (5, "succeeded")), (examples.R2, (3, "succeeded"))):
                [detail] = fetch_rows(conn, runs.run_detail(detail_scope, run_id), RunDetailRow)
                assert (detail.total_tokens, detail.status) == want, (dialect, plan, run_id)
            page = fetch_run_page(conn, scope, 5, None, None)
            assert [(row.id, row.total_tokens) for row in page] == [(examples.R2, 3), (examples.R1, 5)]
