"""Hand-checked answers for every measure on tests/examples.py, in both dialects and plans."""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec
import psycopg
import pytest

from app.core import answers
from app.core.kept_runs import KeptRuns
from app.core.measures import DAILY_DURATION, DAILY_MEASURES, MEASURES_BY_NAME
from queries import counts, daily, run_rows, runs
from queries.rows import CursorRow, DailyRow, RunDetailRow, RunStateRow, StatusCountRow
from queries.runs import RunCursor
from queries.scope import RunScope
from schemas.runs import RunCounts
from tests import examples, reference
from tests.db import fetch, fetch_rows, fetch_run_page, load_history
from tests.points import answered

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
    """(date, value) per day for a measure of one value, (date, {field: value}) for others."""
    conn, _ = run
    measure = MEASURES_BY_NAME[name]
    found = fetch_rows(conn, daily.daily(scope, zone, measure.sql), DailyRow)
    points = answered(measure, answers.daily_points(measure, found))
    return [(day, values) if len(values) > 1 else (day, *values.values()) for day, values in points]


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
        "day_values (durations)",
        "daily_runs of succeeded runs",
        "daily_runs of running runs",
        "day_users of failed runs",
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


def test_runs_by_status_and_durations_by_eye(run: Any) -> None:
    """Shanghai 2025-03-01: r1 succeeded (finished 16:00:05, started 16:00:00.1, no elapsed_time:
    4.9 s); 2025-03-02: r2 failed (1.5 s), r3 running, r4 paused."""
    scope = run[1](start=MAR_1_SHANGHAI_US, end=MAR_3_SHANGHAI_US)
    statuses = _daily(run, "daily_status", scope, "Asia/Shanghai")
    nothing = {"succeeded": 0, "failed": 0, "stopped": 0, "partial_succeeded": 0, "running": 0, "paused": 0}
    assert statuses == [
        ("2025-03-01", {**nothing, "succeeded": 1, "failure_rate": 0.0}),
        ("2025-03-02", {**nothing, "failed": 1, "running": 1, "paused": 1, "failure_rate": 1.0}),
    ]
    assert _daily(run, "daily_duration", scope, "Asia/Shanghai") == [
        ("2025-03-01", {"count": 1, "p50": 4.9, "p95": 4.9, "p99": 4.9, "max": 4.9}),
        ("2025-03-02", {"count": 1, "p50": 1.5, "p95": 1.5, "p99": 1.5, "max": 1.5}),
    ]


def _finished(run_id: str, day: int, seconds: float | None, status: str = "succeeded") -> list[Any]:
    """A run created at noon UTC on 2025-04-`day`: running, then finished after `seconds`
    (elapsed_time; None: only finished_at - started_at says it, 1.5 s)."""
    created = f"2025-04-{day:02d}T12:00:00"
    finished = {"created_at": created, "started_at": created, "finished_at": f"2025-04-{day:02d}T12:00:01.5"}
    time = 1_743_508_800 + (day - 1) * 86_400
    return [
        examples._version(run_id, time, 1, "running", 0, created_at=created, started_at=created),
        examples._version(run_id, time + 9, 2, status, 5, elapsed_time=seconds, **finished),
    ]


def _nearest_rank_days() -> list[Any]:
    """Days of 1, 2, 3, 12 (with ties) and 100 finished runs (and an unfinished one an hour later),
    a duration known only from its times, and a retry tying on everything but its elapsed_time
    (the longer wins). Every finished run at noon UTC."""
    days = {
        1: [3.0],
        2: [2.0, 1.0],
        3: [5.0, 1.0, 3.0],
        4: [2.0, 7.0, 2.0, 2.0, 1.0, 1.0, 3.0, 4.0, 5.0, 6.0, 8.0, 9.0],  # p95 is the 12th (ceil 11.4)
        5: [float(n) for n in range(100, 0, -1)],
    }
    rows: list[Any] = []
    for day, durations in days.items():
        rows += [row for n, seconds in enumerate(durations) for row in _finished(f"d{day}-{n}", day, seconds)]
    rows += _finished("times-only", 6, None) + _finished("failed", 6, 0.25, status="failed")
    created = "2025-04-05T13:00:00"
    rows.append(
        examples._version(
            "unfinished", 1_743_508_800, 1, "running", 0, created_at=created, started_at=created
        )
    )
    for n, (first, then) in enumerate([(4.0, 9.0), (9.0, 4.0)] * 2):  # written in either order
        retry = _finished(f"retry-{n}", 7, first)
        rows += [*retry, msgspec.structs.replace(retry[1], elapsed_time=then)]
    return rows


NEAREST_RANKS = [
    ("2025-04-01", {"count": 1, "p50": 3.0, "p95": 3.0, "p99": 3.0, "max": 3.0}),
    ("2025-04-02", {"count": 2, "p50": 1.0, "p95": 2.0, "p99": 2.0, "max": 2.0}),
    ("2025-04-03", {"count": 3, "p50": 3.0, "p95": 5.0, "p99": 5.0, "max": 5.0}),
    ("2025-04-04", {"count": 12, "p50": 3.0, "p95": 9.0, "p99": 9.0, "max": 9.0}),
    ("2025-04-05", {"count": 100, "p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}),
    ("2025-04-06", {"count": 2, "p50": 0.25, "p95": 1.5, "p99": 1.5, "max": 1.5}),
    ("2025-04-07", {"count": 4, "p50": 9.0, "p95": 9.0, "p99": 9.0, "max": 9.0}),
]


def test_nearest_rank_percentiles_on_small_days(run: Any, pg_conn: psycopg.Connection[Any]) -> None:
    """p is the value at position ceil(p * n) of the day's ascending durations: with 1, 2, 3 runs,
    with ties, with 100; the unfinished run of 2025-04-05 has none but counts in the statuses."""
    scope = run[1]
    for physical in (_nearest_rank_days(), _nearest_rank_days()[::-1]):  # ties must not depend on it
        load_history(pg_conn, physical)
        assert _daily(run, "daily_duration", scope(), "UTC") == NEAREST_RANKS
    statuses = _daily(run, "daily_status", scope(), "UTC")
    assert [(values["succeeded"], values["running"], values["failure_rate"]) for _, values in statuses] == [
        (1, 0, 0.0), (2, 0, 0.0), (3, 0, 0.0), (12, 0, 0.0), (100, 1, 0.0), (1, 0, 0.5), (4, 0, 0.0)
    ]  # fmt: skip
    assert reference.daily_duration(
        reference.runs_in_scope(_nearest_rank_days(), examples.T, examples.A, "app-run"), "UTC"
    ) == [(date.fromisoformat(day), values) for day, values in NEAREST_RANKS]


def test_kept_runs_rank_the_same_durations(
    dialect_conns: dict[str, psycopg.Connection[Any]], pg_conn: psycopg.Connection[Any]
) -> None:
    """The runs kept for live days (their keys read by queries/run_rows.py, tallied in Python)
    answer the same nearest ranks, for a whole day and for part of one."""
    load_history(pg_conn, _nearest_rank_days()[::-1])
    for dialect in ("postgres", "sls"):
        scope = RunScope(
            tenant_id=examples.T, app_id=examples.A, triggered_from="app-run", start_us=0, dialect=dialect
        )  # type: ignore[arg-type]
        state = KeptRuns(0, None)
        state.merge(fetch_rows(dialect_conns[dialect], run_rows.run_rows(scope, "UTC"), RunStateRow))
        points = answers.daily_points(DAILY_DURATION, state.rows(0, 2**62))
        assert answered(DAILY_DURATION, points) == NEAREST_RANKS, dialect
        noon_5 = 1_743_854_400_000_000  # 2025-04-05 12:00 UTC: the finished runs, not the one at 13:00
        part = answers.daily_points(DAILY_DURATION, state.rows(noon_5 - 1, noon_5 + 1))
        assert answered(DAILY_DURATION, part) == [NEAREST_RANKS[4]], dialect


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
