"""`make check-sls`: every sls-dialect query once against a real SLS project, shortcut vs windowed.

Opt-in: it runs only when the sls dialect is configured (STATS_DATABASE_URL to SLS, or Dify's
ALIYUN_SLS_* variables) and says clearly that it skipped otherwise.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from psycopg.rows import class_row

from app.answers import cut_fields
from app.config import Settings
from app.measures import DAILY_MEASURES, DAILY_RUNS
from queries import counts, daily, runs
from queries.literals import with_literals
from queries.rows import RunDetailRow, RunPageRow
from queries.scope import Plan, Query, RunScope


def _fetch(conn: psycopg.Connection[Any], query: Query) -> list[tuple[Any, ...]]:
    """As the service sends it to SLS: the values written in, the simple query protocol."""
    with psycopg.ClientCursor(conn) as cursor:
        cursor.execute(with_literals(query))
        return cursor.fetchall()


_PLANS: tuple[Plan, Plan] = ("shortcut", "windowed")


def check_sls(settings: Settings) -> int:
    if settings.dialect != "sls" or not settings.database_url:
        print("check-sls: SKIPPED - no SLS configured (set ALIYUN_SLS_* or STATS_DATABASE_URL to SLS)")
        return 0
    now = datetime.now(UTC)
    start_us = int((now - timedelta(days=7)).timestamp()) * 1_000_000
    with psycopg.connect(settings.database_url, autocommit=True, prepare_threshold=None) as conn:
        found = _fetch(
            conn,
            Query(
                "SELECT tenant_id, app_id, triggered_from FROM workflow_execution WHERE __time__ > 0 LIMIT 1",
                {},
            ),
        )
        if not found:
            print("check-sls: the logstore has no rows; nothing to compare")
            return 1
        tenant_id, app_id, trigger = found[0]
        scope = RunScope(
            tenant_id=tenant_id, app_id=app_id, triggered_from=trigger, start_us=start_us, dialect="sls",
            time_slack_s=settings.time_slack,
        )  # fmt: skip
        scopes = [msgspec.structs.replace(scope, plan=plan) for plan in _PLANS]
        failures = 0
        for measure in DAILY_MEASURES:
            failures += _compare(
                conn, measure.name, [daily.daily(s, "Asia/Shanghai", measure.sql) for s in scopes]
            )
        failures += _compare(conn, "day_users", [daily.day_users(s, "Asia/Shanghai") for s in scopes])
        newest = _fetch(conn, runs.run_page(scope, 1, None, None))
        if newest:  # the detail as a migration reads it: only if created from an instant on
            run_id = newest[0][RunPageRow.__struct_fields__.index("id")]
            detail_scopes = [msgspec.structs.replace(s, triggered_from=None, end_us=None) for s in scopes]
            failures += _compare(conn, "run_detail", [runs.run_detail(s, run_id) for s in detail_scopes])
        failures += _compare(conn, "status_counts", [counts.status_counts(s, None) for s in scopes])
        failures += _compare(conn, "run_page", [runs.run_page(s, 21, None, None) for s in scopes])
        failures += _check_paging(conn, scope)
        _check_truncation(conn, scope, settings.sls_field_bytes)
    print(f"check-sls: {'FAILED' if failures else 'OK'} ({failures} measure(s) differ)")
    return 1 if failures else 0


def _check_paging(conn: psycopg.Connection[Any], scope: RunScope) -> int:
    """Daily runs read in pages of two days equal the same days read as one page: the keyset
    pages every long answer is read in neither skip nor repeat a row."""
    whole = _fetch(conn, daily.daily(scope, "Asia/Shanghai", DAILY_RUNS.sql))
    paged: list[tuple[Any, ...]] = []
    after = None
    for _ in range(1000):
        page = _fetch(conn, daily.daily(scope, "Asia/Shanghai", DAILY_RUNS.sql, after_day=after, page=2))
        paged += page
        if len(page) < 2:
            break
        after = int(page[-1][0])
    same = paged == whole
    print(f"  {'paging':20s} {len(whole)} days in pages of 2: {'same' if same else 'DIFFER'}")
    return 0 if same else 1


def _check_truncation(conn: psycopg.Connection[Any], scope: RunScope, field_bytes: int) -> None:
    """A run whose document reached the field length, and whether its detail says so."""
    reached = Query(
        "SELECT id FROM workflow_execution WHERE tenant_id = %(tenant_id)s AND app_id = %(app_id)s "
        "AND __time__ >= %(min_time)s AND (length(outputs) >= %(near)s OR length(inputs) >= %(near)s "
        "OR length(graph) >= %(near)s) ORDER BY id LIMIT 1",
        {**scope.params(), "near": field_bytes - 3},
    )
    found = _fetch(conn, reached)
    if not found:
        print(
            f"  {'truncation':20s} no document in these days is near the field length ({field_bytes} bytes)"
        )
        return
    detail_scope = msgspec.structs.replace(scope, triggered_from=None, end_us=None)
    with psycopg.ClientCursor(conn, row_factory=class_row(RunDetailRow)) as cursor:
        cursor.execute(with_literals(runs.run_detail(detail_scope, str(found[0][0]))))
        rows = cursor.fetchall()
    flagged = cut_fields(rows[0], field_bytes) if rows else []
    lengths = {name: len((getattr(rows[0], name) or "").encode()) for name in ("graph", "inputs", "outputs")}
    print(f"  {'truncation':20s} run {found[0][0]}: bytes {lengths}, flagged {flagged or 'none'}")


def _compare(conn: psycopg.Connection[Any], name: str, queries: list[Query]) -> int:
    answers, timings = [], []
    for query in queries:
        started = time.perf_counter()
        answers.append(_fetch(conn, query))
        timings.append((time.perf_counter() - started) * 1000)
    same = answers[0] == answers[1]
    verdict = "same" if same else "DIFFER"
    print(f"  {name:20s} shortcut {timings[0]:8.1f} ms  windowed {timings[1]:8.1f} ms  {verdict}")
    if not same:
        print(f"    shortcut: {answers[0][:5]}\n    windowed: {answers[1][:5]}", file=sys.stderr)
    return 0 if same else 1
