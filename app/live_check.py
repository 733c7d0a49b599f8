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

from app.config import Settings
from app.measures import DAILY_MEASURES
from queries import counts, daily, runs
from queries.rows import RunPageRow
from queries.scope import Plan, Query, RunScope


def _fetch(conn: psycopg.Connection[Any], query: Query) -> list[tuple[Any, ...]]:
    with psycopg.ClientCursor(conn) as cursor:
        cursor.execute(query.sql, query.params)
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
    print(f"check-sls: {'FAILED' if failures else 'OK'} ({failures} measure(s) differ)")
    return 1 if failures else 0


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
