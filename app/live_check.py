"""`make check-sls`: every sls-dialect query once against a real SLS project, shortcut vs windowed.

Opt-in: it runs only when the sls dialect is configured (STATS_DATABASE_URL to SLS, or Dify's
ALIYUN_SLS_* variables) and says clearly that it skipped otherwise.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from app.config import Settings
from queries.planner import Planner, QueryPlan
from queries.scope import Query, RunScope


def _fetch(conn: psycopg.Connection[Any], query: Query) -> list[tuple[Any, ...]]:
    with psycopg.ClientCursor(conn) as cursor:
        cursor.execute(query.sql, query.params)
        return cursor.fetchall()


_PLANS: tuple[QueryPlan, QueryPlan] = ("shortcut", "windowed")


def check_sls(settings: Settings) -> int:
    if settings.dialect != "sls" or not settings.database_url:
        print("check-sls: SKIPPED - no SLS configured (set ALIYUN_SLS_* or STATS_DATABASE_URL to SLS)")
        return 0
    now = datetime.now(UTC)
    start_us = int((now - timedelta(days=7)).timestamp()) * 1_000_000
    with psycopg.connect(settings.database_url, autocommit=True, prepare_threshold=None) as conn:
        found = _fetch(
            conn, Query("SELECT tenant_id, app_id, triggered_from FROM workflow_execution LIMIT 1", {})
        )
        if not found:
            print("check-sls: the logstore has no rows; nothing to compare")
            return 1
        tenant_id, app_id, trigger = found[0]
        scope = RunScope(
            tenant_id=tenant_id, app_id=app_id, triggered_from=trigger, start_us=start_us, dialect="sls",
            time_slack_s=settings.time_slack,
        )  # fmt: skip
        failures = 0
        planners = [Planner(plan=p, dialect="sls") for p in _PLANS]
        for name in ("daily_runs", "daily_terminals", "daily_token_costs", "daily_interactions", "day_users"):
            failures += _compare(
                conn, name, [getattr(planner, name)(scope, "Asia/Shanghai") for planner in planners]
            )
        run_id = _fetch(conn, planners[0].run_page(scope, 1, None, None))
        if run_id:  # the detail as a migration reads it: only if created from an instant on
            failures += _compare(
                conn,
                "run_detail",
                [planner.run_detail(tenant_id, app_id, run_id[0][0], start_us, None) for planner in planners],
            )
        failures += _compare(
            conn, "status_counts", [planner.status_counts(scope, None) for planner in planners]
        )
        failures += _compare(
            conn, "run_page", [planner.run_page(scope, 21, None, None) for planner in planners]
        )
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
