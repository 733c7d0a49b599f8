"""Which apps have runs: rows `(tenant_id, app_id, runs, last_created_us)` per app with runs
created in [start, end), one tenant or every tenant, ordered by (tenant_id, app_id) in keyset pages.

Unlike the Grafana picker (queries/apps.py, by write time), runs are counted by *created* time,
so two sources split at STATS_LOGSTORE_SINCE each count exactly the runs they own and a run is
counted once. `last_created_us` is the newest run's created time (epoch µs).

- shortcut, per run (PostgreSQL): one GROUP BY id, created time parsed once per run. Exact because
  tenant, app, created_at and started_at never change between versions (queries/README.md).
- shortcut, per version (SLS): parse every version, count distinct ids (its columnar strength).
- windowed: the latest version of every run by ROW_NUMBER(), then group; no writer invariant.
- workflow_runs: Dify's table, whose row is the run.

Every LogStore statement prunes on `__time__ >= start - slack` (a run's rows are written at or
after its created time), so `start` is required. Empty and NULL ids are alike skipped (`<> ''`
is false for both). Pages: `after` is the last (tenant_id, app_id) of the previous page; the
order is unique because the rows are grouped by exactly those columns.
"""

from __future__ import annotations

import msgspec

from queries.dialects import Dialect, created_text_sql, epoch_us_sql, parse_once_fence
from queries.scope import LATEST_FIRST, LOGSTORE_TABLE, Plan, Query
from queries.workflow_runs import WORKFLOW_RUNS_TABLE, naive_utc

APP_ACTIVITY_PAGE = 500


class AppKey(msgspec.Struct, frozen=True):
    """Keyset position: the last (tenant_id, app_id) of the previous page."""

    tenant_id: str
    app_id: str


class ActivityScope(msgspec.Struct, frozen=True, kw_only=True):
    """Runs created in [start_us, end_us) of one tenant (None: every tenant), read with `plan`."""

    tenant_id: str | None
    start_us: int
    end_us: int | None = None
    time_slack_s: int = 3600
    dialect: Dialect = "postgres"
    plan: Plan = "shortcut"


def app_activity(scope: ActivityScope, after: AppKey | None = None, limit: int = APP_ACTIVITY_PAGE) -> Query:
    """One page of apps with runs in the scope, after `after`, in (tenant_id, app_id) order."""
    params: dict[str, object] = {"start_us": scope.start_us, "limit": int(limit)}
    if scope.tenant_id is not None:
        params["tenant_id"] = scope.tenant_id
    if scope.end_us is not None:
        params["end_us"] = scope.end_us
    if after is not None:
        params["after_tenant_id"] = after.tenant_id
        params["after_app_id"] = after.app_id
    if scope.plan == "workflow_runs":
        return _workflow_runs_activity(scope, after, params)
    params["min_time"] = scope.start_us // 1_000_000 - scope.time_slack_s
    if scope.plan == "windowed":
        runs_sql = _windowed_runs(scope, after)
        aggregates = "count(*) AS runs"
    elif scope.dialect == "sls":
        runs_sql = _versions(scope, after)
        aggregates = "count(DISTINCT id) AS runs"
    else:
        runs_sql = _per_run(scope, after)
        aggregates = "count(*) AS runs"
    sql = f"""
SELECT tenant_id, app_id, {aggregates}, max(created_us) AS last_created_us
FROM ({runs_sql}
) AS runs
WHERE {_created_where(scope)}
GROUP BY tenant_id, app_id
ORDER BY tenant_id, app_id
LIMIT %(limit)s"""
    return Query(sql, params)


def _rows_where(scope: ActivityScope, after: AppKey | None) -> str:
    """Rows of the scope's tenant, after the keyset position, written since start - slack."""
    clauses = ["tenant_id <> ''", "app_id <> ''", "__time__ >= %(min_time)s"]
    if scope.tenant_id is not None:
        clauses.append("tenant_id = %(tenant_id)s")
    if after is not None:
        clauses.append(_after_sql("tenant_id", "app_id"))
    return " AND ".join(clauses)


def _after_sql(tenant_column: str, app_column: str) -> str:
    # Spelled out rather than a row comparison, which SLS does not document. On Dify's table the
    # bound texts compare as uuids, in the same order.
    return (
        f"({tenant_column} > %(after_tenant_id)s OR "
        f"({tenant_column} = %(after_tenant_id)s AND {app_column} > %(after_app_id)s))"
    )


def _created_where(scope: ActivityScope) -> str:
    clauses = ["created_us >= %(start_us)s"]
    if scope.end_us is not None:
        clauses.append("created_us < %(end_us)s")
    return " AND ".join(clauses)


def _per_run(scope: ActivityScope, after: AppKey | None) -> str:
    return f"""
    SELECT tenant_id, app_id, {epoch_us_sql(scope.dialect, "created_text")} AS created_us
    FROM (
        SELECT id, min(tenant_id) AS tenant_id, min(app_id) AS app_id,
               min({created_text_sql()}) AS created_text
        FROM {LOGSTORE_TABLE}
        WHERE {_rows_where(scope, after)}
        GROUP BY id
    ) AS per_run{parse_once_fence(scope.dialect)}"""


def _versions(scope: ActivityScope, after: AppKey | None) -> str:
    return f"""
    SELECT tenant_id, app_id, id, {epoch_us_sql(scope.dialect, created_text_sql())} AS created_us
    FROM {LOGSTORE_TABLE}
    WHERE {_rows_where(scope, after)}"""


def _windowed_runs(scope: ActivityScope, after: AppKey | None) -> str:
    return f"""
    SELECT tenant_id, app_id, {epoch_us_sql(scope.dialect, created_text_sql())} AS created_us
    FROM (
        SELECT tenant_id, app_id, created_at, started_at,
               ROW_NUMBER() OVER (PARTITION BY id ORDER BY {LATEST_FIRST}) AS version_rank
        FROM {LOGSTORE_TABLE}
        WHERE {_rows_where(scope, after)}
    ) AS versions
    WHERE version_rank = 1{parse_once_fence(scope.dialect)}"""


def _workflow_runs_activity(scope: ActivityScope, after: AppKey | None, params: dict[str, object]) -> Query:
    """Dify's table: ids are uuids (ordered as their lowercase text, so pages match the LogStore's
    order), created_at a naive UTC timestamp bound as one."""
    clauses = ["created_at >= %(start_at)s"]
    params["start_at"] = naive_utc(scope.start_us)
    if scope.end_us is not None:
        clauses.append("created_at < %(end_at)s")
        params["end_at"] = naive_utc(scope.end_us)
    if scope.tenant_id is not None:
        clauses.append("tenant_id = %(tenant_id)s")
    if after is not None:
        clauses.append(_after_sql("tenant_id", "app_id"))
    sql = f"""
SELECT CAST(tenant_id AS text) AS tenant_id, CAST(app_id AS text) AS app_id, count(*) AS runs,
       CAST(round(date_part('epoch', max(created_at)) * 1000000) AS bigint) AS last_created_us
FROM {WORKFLOW_RUNS_TABLE}
WHERE {" AND ".join(clauses)}
GROUP BY workflow_runs.tenant_id, workflow_runs.app_id
ORDER BY workflow_runs.tenant_id, workflow_runs.app_id
LIMIT %(limit)s"""
    return Query(sql, params)
