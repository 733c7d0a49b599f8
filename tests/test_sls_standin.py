"""The SLS stand-in enforces each of SLS's documented limits, and the Presto shims are no kinder
than Presto: every behaviour is shown through a real psycopg connection configured as the service
configures its SLS connections (autocommit, no prepared statements, client-side binding)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from app.config import load_settings
from app.core.measures import DAILY_DURATION, DAILY_RUNS
from app.stores.backend import Backend
from queries import daily
from queries.scope import RunScope
from tests import examples
from tests.db import fetch, fetch_run_page, load_history
from tests.sls_standin import SlsStandIn, Statement, split_statements


@pytest.fixture
def standin(sls_standin: SlsStandIn) -> SlsStandIn:
    """The session's stand-in, its counters zeroed for this test."""
    sls_standin.counters.reset()
    return sls_standin


@pytest.fixture
def conn(standin: SlsStandIn) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(
        standin.url, autocommit=True, prepare_threshold=None, cursor_factory=psycopg.ClientCursor
    ) as connection:
        yield connection


ONE_ROW = "generate_series(1, 1) AS one"  # SLS needs a FROM in every SELECT


def _connect_async(url: str) -> Any:
    return psycopg.AsyncConnection.connect(
        url, autocommit=True, prepare_threshold=None, cursor_factory=psycopg.AsyncClientCursor
    )


# --- the statement scanner, on its own ----------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "has_limit", "has_order_by"),
    [
        ("SELECT a FROM t", False, False),
        ("SELECT a FROM t LIMIT 5", True, False),
        ("select a from t order by a limit 5;", True, True),
        ("SELECT a FROM (SELECT a FROM t LIMIT 5) s", False, False),
        ("WITH s AS (SELECT a FROM t ORDER BY a LIMIT 5) SELECT a FROM s", False, False),
        ("SELECT row_number() OVER (ORDER BY a) FROM t", False, False),
        ("SELECT array_agg(a ORDER BY b) FROM t", False, False),
        ("SELECT 'ORDER BY a LIMIT 1' FROM t -- ORDER BY a LIMIT 1", False, False),
        ("SELECT $$ LIMIT 1 $$, E'\\' LIMIT 1', \"limit\" FROM t /* ORDER /* BY */ x */", False, False),
        ("(SELECT a FROM t) UNION ALL (SELECT a FROM u ORDER BY a LIMIT 1)", False, False),
        ("SELECT a FROM t ORDER BY a", False, True),
    ],
)
def test_the_scanner_sees_only_top_level_limit_and_order_by(
    sql: str, has_limit: bool, has_order_by: bool
) -> None:
    [(text, scanned)] = split_statements(sql)
    statement = Statement.of(text, scanned)
    assert statement.is_select
    assert (statement.has_limit, statement.has_order_by) == (has_limit, has_order_by)


def test_the_scanner_splits_on_top_level_semicolons_only() -> None:
    assert [text for text, _ in split_statements("SELECT ';'; SELECT 2 ; -- end")] == [
        "SELECT ';'",
        "SELECT 2",
    ]
    assert split_statements(" ; ;\n-- nothing\n/* at all */") == []


# --- the protocol -------------------------------------------------------------------------------


def test_parse_is_refused_and_the_connection_recovers(
    standin: SlsStandIn, conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="simple query protocol"):
        psycopg.Cursor(conn).execute(f"SELECT %s::int FROM {ONE_ROW}", [1])  # server-side: Parse/Bind
    assert standin.counters["refused_parse"] == 1
    assert conn.execute(f"SELECT %s::int FROM {ONE_ROW}", [2]).fetchall() == [(2,)]  # client-side binding


def test_begin_commit_rollback_are_answered_but_not_run(
    standin: SlsStandIn, conn: psycopg.Connection[Any]
) -> None:
    for statement in ("BEGIN", "COMMIT", "begin;", "ROLLBACK"):
        conn.execute(statement)
        # PostgreSQL would report a transaction open after BEGIN; SLS has none to open
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert standin.counters["ignored_transaction"] == 4
    assert standin.counters["queries"] == 4
    assert [seen.outcome for seen in standin.counters.statements()] == ["ignored_transaction"] * 4


@pytest.mark.parametrize("sql", ["", "   ", ";", " ; ;\n", "-- only a comment"])
def test_an_empty_query_is_refused(standin: SlsStandIn, conn: psycopg.Connection[Any], sql: str) -> None:
    with pytest.raises(psycopg.errors.SyntaxError, match="empty query"):
        conn.execute(sql)
    assert standin.counters["refused_empty"] == 1
    assert conn.execute(f"SELECT 1 FROM {ONE_ROW}").fetchall() == [(1,)]


def test_the_pools_connection_check_is_an_empty_query_so_sls_refuses_it(standin: SlsStandIn) -> None:
    """psycopg_pool's check_connection runs `execute("")`: on SLS it fails on a healthy connection."""

    async def check() -> None:
        async with await _connect_async(standin.url) as connection:
            await AsyncConnectionPool.check_connection(connection)

    with pytest.raises(psycopg.errors.SyntaxError, match="empty query"):
        asyncio.run(check())
    assert standin.counters["refused_empty"] == 1


# --- the default LIMIT --------------------------------------------------------------------------

SERIES = "generate_series(1, 150) AS g"
SERIES_10 = "generate_series(1, 10) AS g"


@pytest.mark.parametrize(
    ("sql", "rows", "appended"),
    [
        (f"SELECT g FROM {SERIES}", 100, True),
        (f"SELECT g FROM {SERIES};", 100, True),
        (f"SELECT g FROM {SERIES} LIMIT 150", 150, False),
        (f"SELECT g FROM {SERIES} ORDER BY g LIMIT 150", 150, False),
        (f"SELECT g FROM (SELECT g FROM {SERIES}) AS s", 100, True),
        (f"WITH s AS (SELECT g FROM {SERIES}) SELECT g FROM s LIMIT 150", 150, False),
        (f"SELECT g, 'LIMIT 150' FROM {SERIES}", 100, True),
        (f"SELECT g FROM {SERIES} -- LIMIT 150", 100, True),
    ],
)
def test_a_select_without_a_top_level_limit_gets_100_rows(
    standin: SlsStandIn, conn: psycopg.Connection[Any], sql: str, rows: int, appended: bool
) -> None:
    assert len(conn.execute(sql).fetchall()) == rows
    assert standin.counters["default_limit_appended"] == int(appended)
    [seen] = standin.counters.statements(1)
    assert (seen.sql, seen.limit_appended, seen.rows) == (sql, appended, rows)


# --- long text ----------------------------------------------------------------------------------


def test_text_over_2048_characters_is_cut_and_other_types_are_not(
    standin: SlsStandIn, conn: psycopg.Connection[Any]
) -> None:
    row = conn.execute(
        "SELECT repeat('x', 3000) AS t, CAST(repeat('é', 3000) AS varchar) AS v, repeat('s', 2048) AS exact,"
        " 9223372036854775807::bigint AS n, CAST(repeat('1', 3000) AS numeric) AS big,"
        f" to_json(repeat('j', 3000)) AS j, NULL::text AS nothing FROM {ONE_ROW}"
    ).fetchone()
    assert row is not None
    text, varchar, exact, number, numeric, json, nothing = row
    assert (text, varchar, exact) == ("x" * 2048, "é" * 2048, "s" * 2048)  # characters, not bytes
    assert number == 9223372036854775807
    assert len(str(numeric)) == 3000
    assert json == "j" * 3000
    assert nothing is None
    assert standin.counters["truncated_values"] == 2


# --- the concurrency quota ----------------------------------------------------------------------


def test_the_16th_concurrent_query_is_refused(standin: SlsStandIn, database_url: str) -> None:
    async def scenario() -> list[Any]:
        connections = [await _connect_async(standin.url) for _ in range(16)]
        try:

            async def sleep(connection: psycopg.AsyncConnection[Any]) -> Any:
                return await (await connection.execute(f"SELECT pg_sleep(1.5) FROM {ONE_ROW}")).fetchall()

            running = [asyncio.create_task(sleep(c)) for c in connections[:15]]
            deadline = time.monotonic() + 10
            while _sleeping(database_url) < 15 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert _sleeping(database_url) == 15
            with pytest.raises(psycopg.OperationalError, match=r"too many concurrent queries \(limit 15\)"):
                await connections[15].execute(f"SELECT 1 FROM {ONE_ROW}")
            answers = await asyncio.gather(*running)
            after = await connections[15].execute(f"SELECT 'after' FROM {ONE_ROW}")
            answers.append(await after.fetchall())
            return answers
        finally:
            for connection in connections:
                await connection.close()

    answers = asyncio.run(scenario())
    assert answers == [[("",)]] * 15 + [[("after",)]]
    assert standin.counters["refused_concurrency"] == 1


def _sleeping(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(1.5)%'"
        ).fetchone()
    return int(row[0]) if row else 0


# --- row order ----------------------------------------------------------------------------------


def test_rows_without_a_top_level_order_by_come_in_no_particular_order(
    standin: SlsStandIn, conn: psycopg.Connection[Any]
) -> None:
    unordered = "SELECT g FROM generate_series(1, 20) AS g LIMIT 20"
    ordered = "SELECT g FROM generate_series(1, 20) AS g ORDER BY g LIMIT 20"
    assert conn.execute(ordered).fetchall() == [(g,) for g in range(1, 21)]
    assert standin.counters["shuffled_results"] == 0
    shuffled = conn.execute(unordered).fetchall()
    assert shuffled != [(g,) for g in range(1, 21)]
    assert sorted(shuffled) == [(g,) for g in range(1, 21)]
    assert conn.execute(unordered).fetchall() == shuffled  # seeded: the same statement, the same order
    assert standin.counters["shuffled_results"] == 2
    two = conn.execute("SELECT g FROM generate_series(1, 2) AS g").fetchall()
    assert two == [(2,), (1,)]  # never left as the database returned it when it can be changed
    window = "SELECT g, row_number() OVER (ORDER BY g) FROM generate_series(1, 5) AS g"
    assert [n for _, n in conn.execute(window).fetchall()] != [1, 2, 3, 4, 5]


# --- the Presto shims ---------------------------------------------------------------------------


def test_concat_is_null_when_any_argument_is_as_in_presto(conn: psycopg.Connection[Any]) -> None:
    sql = f"SELECT concat('a', NULL, 'b'), concat('a', 'b'), concat(coalesce(NULL, ''), 'b') FROM {ONE_ROW}"
    assert conn.execute(sql).fetchall() == [(None, "ab", "b")]  # PostgreSQL's own: 'ab', 'ab', 'b'


def test_a_descending_order_puts_nulls_last_as_in_presto(conn: psycopg.Connection[Any]) -> None:
    values = "(VALUES (1), (NULL), (3)) AS t(x)"
    assert conn.execute(f"SELECT x FROM {values} ORDER BY x DESC LIMIT 3").fetchall() == [(3,), (1,), (None,)]
    assert conn.execute(f"SELECT x FROM {values} ORDER BY x LIMIT 3").fetchall() == [(1,), (3,), (None,)]
    said = f"SELECT x FROM {values} ORDER BY x DESC NULLS FIRST LIMIT 3"
    assert conn.execute(said).fetchall() == [(None,), (3,), (1,)]
    ranked = f"SELECT x, row_number() OVER (ORDER BY x DESC) AS n FROM {values} ORDER BY n LIMIT 3"
    assert [x for x, _ in conn.execute(ranked).fetchall()] == [3, 1, None]


def test_try_answers_null_where_the_parse_fails_and_the_statement_goes_on(
    conn: psycopg.Connection[Any],
) -> None:
    texts = "(VALUES ('2025-02-28T10:00:00Z'), ('2025-02-30T10:00:00Z'), ('2025-13-01T00:00:00Z')) AS t(x)"
    sql = f"SELECT to_unixtime(TRY( from_iso8601_timestamp(x) )) AS e FROM {texts} ORDER BY e LIMIT 3"
    assert conn.execute(sql).fetchall() == [(1740736800.0,), (None,), (None,)]
    with pytest.raises(psycopg.errors.DatetimeFieldOverflow):  # without TRY, one bad value fails all
        conn.execute(f"SELECT to_unixtime(from_iso8601_timestamp(x)) AS e FROM {texts} LIMIT 3")


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        (f"SELECT g FROM {SERIES_10} ORDER BY g LIMIT 5 OFFSET 5", "OFFSET"),
        (f"SELECT g FROM {SERIES_10} ORDER BY g OFFSET 5", "OFFSET"),
        (f"SELECT g FROM (SELECT g FROM {SERIES_10} LIMIT 5) AS s LIMIT 5", "LIMIT in a subquery"),
        (f"WITH s AS (SELECT g FROM {SERIES_10} LIMIT 5) SELECT g FROM s LIMIT 5", "LIMIT in a subquery"),
        (
            f"SELECT g FROM {SERIES_10} WHERE g IN (SELECT g FROM {SERIES_10} LIMIT 2) LIMIT 5",
            "LIMIT in a subquery",
        ),
        ("SELECT 1 LIMIT 1", "FROM"),
        ("SELECT 1 AS ok", "FROM"),
        (f"SELECT g FROM {SERIES_10} WHERE g = (SELECT 2) LIMIT 5", "FROM"),
        (f"SELECT g FROM {SERIES_10} WHERE TRY(g / 0) = 1 LIMIT 5", "TRY only around"),
    ],
)
def test_what_sls_does_not_document_is_refused(
    standin: SlsStandIn, conn: psycopg.Connection[Any], sql: str, reason: str
) -> None:
    with pytest.raises(psycopg.errors.FeatureNotSupported, match=reason):
        conn.execute(sql)
    assert standin.counters["refused_statement"] == 1
    assert conn.execute(f"SELECT 1 FROM {ONE_ROW}").fetchall() == [(1,)]  # the connection goes on


def test_limit_and_offset_in_text_comments_and_names_are_not_clauses(conn: psycopg.Connection[Any]) -> None:
    sql = f"SELECT 'LIMIT 1 OFFSET 2' AS \"offset\" FROM {ONE_ROW} -- (SELECT 1 LIMIT 1)\nLIMIT 1"
    assert conn.execute(sql).fetchall() == [("LIMIT 1 OFFSET 2",)]


@pytest.mark.parametrize(
    "text",
    ["garbage", "", "2025-03-01 10:00:00", "now", "epoch", "March 1 2025", "2025-03-01T10:00:00+08:00 junk"],
)
def test_from_iso8601_timestamp_refuses_what_is_not_iso_8601(
    conn: psycopg.Connection[Any], text: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidDatetimeFormat):
        conn.execute(f"SELECT from_iso8601_timestamp(%s) FROM {ONE_ROW}", [text])


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2025-03-01T10:00:00Z", 1740823200.0),
        ("2025-03-01T10:00:00.123456+08:00", 1740794400.123),  # Presto keeps milliseconds
        ("2025-03-01T10:00+0800", 1740794400.0),
        ("2025-03-01T10:00:00", 1740794400.0),  # no offset: the session's zone, Asia/Shanghai
        ("2025-03-01", 1740758400.0),
    ],
)
def test_from_iso8601_timestamp_reads_iso_8601(
    conn: psycopg.Connection[Any], text: str, epoch: float
) -> None:
    sql = f"SELECT to_unixtime(from_iso8601_timestamp(%s)) FROM {ONE_ROW}"
    assert conn.execute(sql, [text]).fetchall() == [(epoch,)]


# --- the proxy's own life -----------------------------------------------------------------------


def test_terminate_and_stop_leave_nothing_behind(database_url: str) -> None:
    proxy = SlsStandIn(database_url, seed=7).start()
    with psycopg.connect(proxy.url, autocommit=True, cursor_factory=psycopg.ClientCursor) as first:
        assert first.execute(f"SELECT 1 FROM {ONE_ROW}").fetchall() == [(1,)]
    lingering = psycopg.connect(proxy.url, autocommit=True, cursor_factory=psycopg.ClientCursor)
    proxy.stop()
    assert not proxy._thread.is_alive()
    with pytest.raises(psycopg.OperationalError):
        lingering.execute(f"SELECT 1 FROM {ONE_ROW}")
    lingering.close()
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", proxy.port))
    assert proxy.counters["queries"] == 1


# --- the service's own SLS use, through the stand-in ------------------------------------------


def test_the_services_backend_answers_through_the_standin(standin: SlsStandIn) -> None:
    settings = load_settings(
        {"STATS_DATABASE_URL": standin.url, "STATS_DIALECT": "sls", "STATS_QUERY_TIMEOUT": "1"}
    )

    async def ping() -> None:
        backend = Backend(standin.url, settings)
        await backend.open()
        try:
            await backend.ping()  # /readyz's query
        finally:
            await backend.close()

    asyncio.run(ping())
    assert standin.counters["refused_empty"] == standin.counters["refused_statement"] == 0
    checks = [seen.sql for seen in standin.counters.statements() if "AS ok" in seen.sql]
    assert checks and all(
        sql.startswith("SELECT __time__ AS ok FROM workflow_execution WHERE __time__ >= ") for sql in checks
    )


def test_the_checks_of_the_pool_and_the_breaker_are_sql_sls_documents(standin: SlsStandIn) -> None:
    """`SELECT 1` has no FROM: SLS may refuse it, and a refused check discards every connection.
    The pool's check and the breaker's probe read one row of the logstore instead."""
    settings = load_settings({"STATS_DATABASE_URL": standin.url, "STATS_DIALECT": "sls"})

    async def check() -> None:
        backend = Backend(standin.url, settings)
        await backend.open()
        try:
            async with backend.pool.connection() as _:
                pass
            await backend.pool.check()  # every idle connection checked
            assert await backend.breaker.confirm()  # the probe, on a fresh connection
        finally:
            await backend.close()
        async with await _connect_async(standin.url) as connection:
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="FROM"):
                await connection.execute("SELECT 1 LIMIT 1")  # what they used to send

    asyncio.run(check())
    assert standin.counters["refused_statement"] == 1
    assert standin.counters["queries"] >= 3


def _one_run_a_day_loaded(pg_conn: psycopg.Connection[Any], days: int, plan: str) -> RunScope:
    """Loads `days` runs of app A, one a day from 2025-01-01; the sls scope over all of them."""
    load_history(pg_conn, _one_run_a_day(days))
    return RunScope(
        tenant_id=examples.T,
        app_id=examples.A,
        triggered_from="app-run",
        dialect="sls",
        plan=plan,  # type: ignore[arg-type]
    )


def _one_run_a_day(days: int) -> list[Any]:
    first = datetime(2025, 1, 1, 12, tzinfo=UTC)
    runs = []
    for day in range(days):
        created = first + timedelta(days=day)
        run_id = f"{day:08x}-0000-4000-8000-000000000000"
        text = created.replace(tzinfo=None).isoformat()
        moment = int(created.timestamp() * 1_000_000)
        runs.append(
            examples._version(
                run_id, moment, moment * 1000, "succeeded", 1, created_at=text, started_at=text,
                finished_at=text, elapsed_time=float(day),
            )
        )  # fmt: skip
    return runs


@pytest.mark.parametrize("plan", ["shortcut", "windowed"])
@pytest.mark.parametrize("measure", ["daily_runs", "daily_duration", "day_users", "day_values"])
def test_150_days_of_runs_give_150_daily_rows_through_the_standin(
    standin: SlsStandIn,
    conn: psycopg.Connection[Any],
    pg_conn: psycopg.Connection[Any],
    plan: str,
    measure: str,
) -> None:
    """The API allows 400-day ranges; every day with runs is one row (day_users: one per user;
    day_values: one per duration)."""
    scope = _one_run_a_day_loaded(pg_conn, 150, plan)
    query = {
        "daily_runs": lambda: daily.daily(scope, "UTC", DAILY_RUNS.sql),
        "daily_duration": lambda: daily.daily(scope, "UTC", DAILY_DURATION.sql),
        "day_users": lambda: daily.day_users(scope, "UTC"),
        "day_values": lambda: daily.day_values(scope, "UTC", DAILY_DURATION.sql),
    }[measure]()
    days = fetch(conn, query)
    assert standin.counters["default_limit_appended"] == 0  # the statement states its own
    assert len(days) == 150


@pytest.mark.parametrize(
    "plan",
    [
        "shortcut",
        "windowed",
    ],
)
def test_a_run_page_of_100_learns_has_more_through_the_standin(
    conn: psycopg.Connection[Any], pg_conn: psycopg.Connection[Any], plan: str
) -> None:
    """The API's largest page is 100 runs; the service asks for 101 to learn whether more follow."""
    scope = _one_run_a_day_loaded(pg_conn, 150, plan)
    page = fetch_run_page(conn, scope, 101, None, None)
    assert len(page) == 101
