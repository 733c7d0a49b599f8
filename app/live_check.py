"""`make check-sls`: every kind of sls-dialect statement once against a real SLS project.

Opt-in: it runs only when the sls dialect is configured (STATS_DATABASE_URL to SLS, or Dify's
ALIYUN_SLS_* variables) and says clearly that it skipped otherwise. For each statement it prints
how long it took, how many rows came back and whether the result was complete (fewer rows than
its LIMIT: nothing was left for a next page), and where the shortcut and windowed plans both
answer, whether they agree. An operator's first run against a project tells everything at once:
a statement SLS refuses shows up as FAILED with SLS's own message.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
from psycopg.rows import class_row

from app.config import Settings
from app.core.answers import cut_fields
from app.core.measures import DAILY_DURATION, DAILY_MEASURES, DAILY_RUNS
from app.demo import COLUMNS
from app.stores.readiness import REQUIRED_FIELDS
from queries import apps, changes, counts, daily, run_rows, runs
from queries.app_activity import ActivityScope, app_activity
from queries.checks import connection_check, field_counts, schema_probe
from queries.literals import with_literals
from queries.node_executions import NodeKey, NodeScope, node_logstore_probe, node_page, run_span
from queries.rows import NodeExecutionRow, RunDetailRow, RunSpanRow
from queries.runs import RunCursor
from queries.scope import LOGSTORE_TABLE, Plan, Query, RunScope

_PLANS: tuple[Plan, Plan] = ("shortcut", "windowed")
ZONE = "Asia/Shanghai"
DST_ZONE = "America/New_York"  # a zone that changes offset within the checked range


class _Checker:
    """Runs statements as the service sends them to SLS (values written in, the simple query
    protocol) and prints one line each; counts what failed or disagreed."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.failures = 0

    def fetch(self, query: Query, row_type: Any = None) -> tuple[list[Any], float]:
        factory = class_row(row_type) if row_type is not None else None
        with psycopg.ClientCursor(self.conn, row_factory=factory) as cursor:  # type: ignore[arg-type]
            started = time.perf_counter()
            cursor.execute(with_literals(query))
            rows = cursor.fetchall()
        return rows, (time.perf_counter() - started) * 1000

    def one(self, name: str, query: Query, row_type: Any = None) -> list[Any]:
        """One statement: its time, rows and completeness; [] (and a failure) when it fails."""
        try:
            rows, took = self.fetch(query, row_type)
        except psycopg.Error as error:
            self.failures += 1
            print(f"  {name:34s} FAILED {str(error).strip().splitlines()[0]}")
            return []
        print(f"  {name:34s} {took:9.1f} ms {len(rows):7d} rows  {_completeness(query, rows)}")
        return rows

    def compare(self, name: str, by_plan: dict[str, Query]) -> None:
        """The same question in both plans: each statement's line, then whether they agree (on
        every column but `last_written`, which only the shortcut plan reads)."""
        found = [
            [_without_last_written(row) for row in self.one(f"{name} ({plan})", query, _Named)]
            for plan, query in by_plan.items()
        ]
        if found[0] != found[1]:
            self.failures += 1
            print(f"  {name:34s} DIFFER", file=sys.stderr)
            print(f"    shortcut: {found[0][:5]}\n    windowed: {found[1][:5]}", file=sys.stderr)


class _Named(dict[str, Any]):
    """A row as its columns by name (psycopg's class_row builds it from keyword arguments)."""

    def __init__(self, **columns: Any) -> None:
        super().__init__(columns)


def _without_last_written(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(value for column, value in row.items() if column != "last_written")


def _completeness(query: Query, rows: list[Any]) -> str:
    limit = query.page_size or _top_limit(query)
    if limit is None:
        return ""
    return "complete" if len(rows) < limit else f"LIMIT {limit} reached: more follow in a next page"


def _top_limit(query: Query) -> int | None:
    tail = with_literals(query).rstrip().rsplit("LIMIT", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].strip().isdigit() else None


def check_sls(settings: Settings, now: datetime | None = None) -> int:
    if settings.dialect != "sls" or not settings.database_url:
        print("check-sls: SKIPPED - no SLS configured (set ALIYUN_SLS_* or STATS_DATABASE_URL to SLS)")
        return 0
    now = now or datetime.now(UTC)
    now_s = int(now.timestamp())
    with psycopg.connect(settings.database_url, autocommit=True, prepare_threshold=None) as conn:
        check = _Checker(conn)
        print("check-sls: the store")
        check.one("connection check", connection_check("sls", now_s))
        check.one("schema probe", schema_probe(LOGSTORE_TABLE, COLUMNS, "sls", now_s))
        week_ago = now_s - 7 * 86_400
        check.one("field counts (7 days)", field_counts((*REQUIRED_FIELDS, "finished_at"), week_ago))
        picked = check.one(
            "an app with runs (7 days)",
            Query(
                f"SELECT tenant_id, app_id, triggered_from FROM {LOGSTORE_TABLE} "
                "WHERE __time__ >= %(since)s LIMIT 1",
                {"since": week_ago},
            ),
        )
        if not picked:
            print("check-sls: the logstore has no rows written in the last 7 days; nothing more to check")
            return 1
        tenant_id, app_id, trigger = (str(value) for value in picked[0])
        start_us = (now_s - 7 * 86_400) * 1_000_000
        retained = None if settings.logstore_ttl_days is None else now_s - settings.logstore_ttl_days * 86_400
        scope = RunScope(
            tenant_id=tenant_id, app_id=app_id, triggered_from=trigger, start_us=start_us, dialect="sls",
            time_slack_s=settings.time_slack, retained_since_s=retained, read_at_s=now_s,
        )  # fmt: skip
        open_range = msgspec.structs.replace(scope, start_us=None)
        plans: dict[str, RunScope] = {plan: msgspec.structs.replace(scope, plan=plan) for plan in _PLANS}
        print(f"check-sls: app {app_id} ({trigger}), the last 7 days")
        _check_daily(check, scope, plans, open_range)
        newest = _check_runs(check, scope, plans)
        if newest is not None:
            _check_nodes(check, scope, newest, now_s)
        _check_apps(check, tenant_id, now_s, settings.time_slack)
        check.failures += _check_paging(check, scope)
        _check_truncation(check, scope, settings.sls_field_bytes)
    verdict = "FAILED" if check.failures else "OK"
    print(f"check-sls: {verdict} ({check.failures} statement(s) failed or differ)")
    return 1 if check.failures else 0


def _both(plans: dict[str, RunScope], build: Callable[[RunScope], Query]) -> dict[str, Query]:
    return {plan: build(scope) for plan, scope in plans.items()}


def _check_daily(check: _Checker, scope: RunScope, plans: dict[str, RunScope], open_range: RunScope) -> None:
    for measure in DAILY_MEASURES:
        aggregates = measure.sql
        check.compare(measure.name, _both(plans, lambda s: daily.daily(s, ZONE, aggregates)))  # noqa: B023
    check.compare(
        "daily_runs in a DST zone", _both(plans, lambda s: daily.daily(s, DST_ZONE, DAILY_RUNS.sql))
    )
    check.compare("day_users", _both(plans, lambda s: daily.day_users(s, ZONE)))
    check.compare(
        "day_values (durations)", _both(plans, lambda s: daily.day_values(s, ZONE, DAILY_DURATION.sql))
    )
    for status in ("succeeded", "running"):  # Grafana's status filter: from each run's latest version
        check.compare(
            f"daily_runs of {status} runs",
            _both(plans, lambda s: daily.daily(s, ZONE, DAILY_RUNS.sql, status=status)),  # noqa: B023
        )
    check.compare(
        "day_users of failed runs", _both(plans, lambda s: daily.day_users(s, ZONE, status="failed"))
    )
    open_plans = {plan: msgspec.structs.replace(open_range, plan=plan) for plan in plans}
    check.compare("daily_runs, open start", _both(open_plans, lambda s: daily.daily(s, ZONE, DAILY_RUNS.sql)))
    check.compare("status_counts", _both(plans, lambda s: counts.status_counts(s, None)))
    check.one("run_rows (kept runs, first read)", run_rows.run_rows(scope, ZONE))
    refresh = msgspec.structs.replace(scope, written_since_s=int(time.time()) - 3_600 - 30)
    check.one("run_rows (a refresh)", run_rows.run_rows(refresh, ZONE))
    bounded = msgspec.structs.replace(scope, written_until_s=int(time.time()) - 86_400)
    check.one("run_rows (an edge, up to its hint)", run_rows.run_rows(bounded, ZONE))
    settled = msgspec.structs.replace(scope, start_us=None, written_since_s=int(time.time()) - 2 * 3_600)
    check.one("changed_days (a validation)", changes.changed_days(settled, ZONE))


def _check_runs(check: _Checker, scope: RunScope, plans: dict[str, RunScope]) -> str | None:
    """The run list and detail statements; the newest run's id (None without runs)."""
    keys = check.one("run_page keys (shortcut)", runs.run_page(scope, 21, None, None), RunCursor)
    summaries = []
    if keys:
        summaries = check.one("run_page rows (shortcut)", runs.run_page_rows(scope, keys))
    windowed = check.one("run_page (windowed)", runs.run_page(plans["windowed"], 21, None, None))
    if summaries != windowed:
        check.failures += 1
        print("  run_page                           DIFFER between the plans", file=sys.stderr)
    if not keys:
        return None
    newest = keys[0]
    check.one("run_cursor", runs.run_cursor(scope, newest.id))
    after = RunCursor(created_us=newest.created_us, id=newest.id)
    check.one("run_page after a cursor (shortcut)", runs.run_page(scope, 21, None, after), RunCursor)
    detail_scopes = {
        plan: msgspec.structs.replace(s, triggered_from=None, start_us=None, end_us=None)
        for plan, s in plans.items()
    }
    check.compare("run_detail", _both(detail_scopes, lambda s: runs.run_detail(s, newest.id)))
    return str(newest.id)


def _check_nodes(check: _Checker, scope: RunScope, run_id: str, now_s: int) -> None:
    """The node logstore (optional: its absence is said, not counted as a failure), the run's
    lookup, and its node executions in both plans, whole and in pages of two."""
    try:
        check.fetch(node_logstore_probe("sls", now_s))
    except psycopg.Error as error:
        print(
            f"  {'node logstore':34s} absent ({str(error).strip().splitlines()[0]}): node routes answer 503"
        )
        return
    whole_run = msgspec.structs.replace(scope, triggered_from=None, start_us=None, end_us=None)
    spans = check.one("run_span", run_span(whole_run, run_id), RunSpanRow)
    if not spans or not spans[0].versions:
        return
    span = spans[0]
    bounds = {
        "min_time_s": int(span.created_us or 0) // 1_000_000 - scope.time_slack_s,
        "max_time_s": int(span.last_written_s) + scope.time_slack_s if span.finished else None,
    }
    node_scopes = {
        plan: NodeScope(
            tenant_id=scope.tenant_id, app_id=scope.app_id, run_id=run_id, dialect="sls", plan=plan, **bounds
        )
        for plan in _PLANS
    }
    check.compare("node_page", {plan: node_page(s, None) for plan, s in node_scopes.items()})
    whole, _ = check.fetch(node_page(node_scopes["shortcut"], None), NodeExecutionRow)
    paged: list[NodeExecutionRow] = []
    after = None
    for _ in range(1000):
        page, _ = check.fetch(node_page(node_scopes["shortcut"], after, 2), NodeExecutionRow)
        paged += page
        if len(page) < 2:
            break
        after = NodeKey(created_key=page[-1].created_key, index=page[-1].index, id=page[-1].id)
    same = paged == whole
    check.failures += 0 if same else 1
    print(f"  {'node paging':34s} {len(whole)} node executions in pages of 2: {'same' if same else 'DIFFER'}")


def _check_apps(check: _Checker, tenant_id: str, now_s: int, slack: int) -> None:
    since = now_s - 7 * 86_400
    check.one("apps_with_runs", apps.apps_with_runs("shortcut", since))
    for plan in _PLANS:
        activity = ActivityScope(
            tenant_id=tenant_id, start_us=since * 1_000_000, time_slack_s=slack, dialect="sls", plan=plan
        )
        check.one(f"app_activity ({plan})", app_activity(activity))


def _check_paging(check: _Checker, scope: RunScope) -> int:
    """Daily runs read in pages of two days equal the same days read as one page: the keyset
    pages every long answer is read in neither skip nor repeat a row."""
    whole, _ = check.fetch(daily.daily(scope, ZONE, DAILY_RUNS.sql))
    paged: list[Any] = []
    after = None
    for _ in range(1000):
        page, _ = check.fetch(daily.daily(scope, ZONE, DAILY_RUNS.sql, after_day=after, page=2))
        paged += page
        if len(page) < 2:
            break
        after = int(page[-1][0])
    same = paged == whole
    print(f"  {'paging':34s} {len(whole)} days in pages of 2: {'same' if same else 'DIFFER'}")
    return 0 if same else 1


def _check_truncation(check: _Checker, scope: RunScope, field_bytes: int) -> None:
    """A run whose document reached the field length, and whether its detail says so."""
    reached = Query(
        f"SELECT id FROM {LOGSTORE_TABLE} WHERE tenant_id = %(tenant_id)s AND app_id = %(app_id)s "
        "AND __time__ >= %(min_time)s AND (length(outputs) >= %(near)s OR length(inputs) >= %(near)s "
        "OR length(graph) >= %(near)s) ORDER BY id LIMIT 1",
        {**scope.params(), "near": field_bytes - 3},
    )
    found = check.one("a run near the field length", reached)
    if not found:
        print(
            f"  {'truncation':34s} no document in these days is near the field length ({field_bytes} bytes)"
        )
        return
    detail_scope = msgspec.structs.replace(scope, triggered_from=None, end_us=None)
    rows, _ = check.fetch(runs.run_detail(detail_scope, str(found[0][0])), RunDetailRow)
    flagged = cut_fields(rows[0], field_bytes) if rows else []
    lengths = {name: len((getattr(rows[0], name) or "").encode()) for name in ("graph", "inputs", "outputs")}
    print(f"  {'truncation':34s} run {found[0][0]}: bytes {lengths}, flagged {flagged or 'none'}")
