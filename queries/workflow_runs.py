"""Every measure over Dify's own `workflow_runs` table (PostgreSQL, one mutable row per run).

The row *is* the run's current state, so there is nothing to choose between: no versions, no
shortcut, no window. The SQL is Dify's own (`created_at >= start AND created_at < end`, group
by the local day, `count(id)`, `count(DISTINCT created_by)`, `sum(total_tokens)`), written to
answer the same row shapes as queries/daily.py, counts.py and runs.py so that one set of
converters (queries/rows.py) serves both sources:
- created_at is a naive UTC timestamp; bounds are bound as naive UTC timestamps (exact to the µs
  and served by Dify's indexes), and the local day uses the same integer offset arithmetic as the
  LogStore (queries/timezones.py) on `date_part('epoch', created_at)`, which reads a naive
  timestamp as UTC whatever the session zone.
- the run list orders by (created_at, id) descending, Dify's own index; a UUID orders exactly as
  its canonical lowercase text, which is how the LogStore side orders ids.
- text columns come out as the LogStore writes them: ISO-8601 text (`to_char`, independent of
  DateStyle), `''` for NULL, so run summaries and details convert identically.
"""

from __future__ import annotations

from datetime import datetime

from queries.runs import DETAIL_COLUMNS, SUMMARY_COLUMNS, RunPage
from queries.scope import Query, RunScope
from queries.timezones import from_epoch_us, local_day_sql, offset_segments

TABLE = "workflow_runs"
CREATED_US = "CAST(round(date_part('epoch', created_at) * 1000000) AS bigint)"


def _iso_text(column: str) -> str:
    return f"""coalesce(to_char({column}, 'YYYY-MM-DD"T"HH24:MI:SS.US'), '')"""


# Each LogStore column, read from Dify's table (same names, same text forms).
_COLUMN_SQL = {
    "id": "CAST(id AS text)",
    "tenant_id": "CAST(tenant_id AS text)",
    "app_id": "CAST(app_id AS text)",
    "workflow_id": "CAST(workflow_id AS text)",
    "created_by": "CAST(created_by AS text)",
    "created_at": _iso_text("created_at"),
    "started_at": _iso_text("created_at"),  # Dify's table has no started_at: a run starts when created
    "finished_at": _iso_text("finished_at"),
    "graph": "coalesce(graph, '')",
    "inputs": "coalesce(inputs, '')",
    "outputs": "coalesce(outputs, '')",
    "error_message": "coalesce(error, '')",
    "total_steps": "coalesce(total_steps, 0)",
    "exceptions_count": "coalesce(exceptions_count, 0)",
}


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(f"{_COLUMN_SQL[name]} AS {name}" if name in _COLUMN_SQL else name for name in names)


def _naive_utc(us: int) -> datetime:
    return from_epoch_us(us).replace(tzinfo=None)


def _scope_where(scope: RunScope, *, with_trigger: bool = True) -> tuple[str, dict[str, object]]:
    clauses = ["tenant_id = %(tenant_id)s", "app_id = %(app_id)s"]
    params: dict[str, object] = {"tenant_id": scope.tenant_id, "app_id": scope.app_id}
    if with_trigger:
        clauses.append("triggered_from = %(triggered_from)s")
        params["triggered_from"] = scope.triggered_from
    if scope.start_us is not None:
        clauses.append("created_at >= %(start_at)s")
        params["start_at"] = _naive_utc(scope.start_us)
    if scope.end_us is not None:
        clauses.append("created_at < %(end_at)s")
        params["end_at"] = _naive_utc(scope.end_us)
    return " AND ".join(clauses), params


def _daily(scope: RunScope, zone: str, aggregates: str, group_by: str = "1") -> Query:
    where, params = _scope_where(scope)
    day = local_day_sql("created_us", offset_segments(zone, scope.start_us, scope.end_us))
    sql = f"""
SELECT {day} AS day, {aggregates}
FROM (
    SELECT created_by, total_tokens, {CREATED_US} AS created_us
    FROM {TABLE}
    WHERE {where}
) AS runs
GROUP BY {group_by}
ORDER BY {group_by}"""
    return Query(sql, params)


def daily_runs(scope: RunScope, zone: str) -> Query:
    return _daily(scope, zone, "count(*) AS runs")


def daily_terminals(scope: RunScope, zone: str) -> Query:
    return _daily(scope, zone, "count(DISTINCT created_by) AS terminal_count")


def daily_token_costs(scope: RunScope, zone: str) -> Query:
    return _daily(scope, zone, "sum(total_tokens) AS token_count")


def daily_interactions(scope: RunScope, zone: str) -> Query:
    return _daily(scope, zone, "count(*) AS runs, count(DISTINCT created_by) AS users")


def day_users(scope: RunScope, zone: str) -> Query:
    """`(day, created_by)` of every user with runs in the scope, for uniting two sources' users."""
    return _daily(scope, zone, "CAST(created_by AS text) AS created_by", group_by="1, 2")


def status_counts(scope: RunScope, status: str | None = None) -> Query:
    where, params = _scope_where(scope)
    if status is not None:
        where += " AND status = %(status)s"
        params["status"] = status
    sql = f"""
SELECT status, count(*) AS runs
FROM {TABLE}
WHERE {where}
GROUP BY status
ORDER BY status"""
    return Query(sql, params)


def run_page(scope: RunScope, limit: int, status: str | None, after: RunPage | None) -> Query:
    """Summary columns + created_us, created time descending then id descending, `limit` rows."""
    where, params = _scope_where(scope)
    if status is not None:
        where += " AND status = %(status)s"
        params["status"] = status
    if after is not None:
        where += " AND (created_at < %(after_at)s OR (created_at = %(after_at)s AND id < %(after_id)s))"
        params["after_at"] = _naive_utc(after.after_created_us)
        params["after_id"] = after.after_id
    params["limit"] = int(limit)
    sql = f"""
SELECT {_columns(SUMMARY_COLUMNS)}, {CREATED_US} AS created_us
FROM {TABLE}
WHERE {where}
ORDER BY workflow_runs.created_at DESC, workflow_runs.id DESC  -- the columns, not the text forms above
LIMIT %(limit)s"""
    return Query(sql, params)


def run_cursor(scope: RunScope, run_id: str) -> Query:
    """created_us of `run_id` if it is a run of this tenant/app/trigger source in the scope."""
    where, params = _scope_where(scope)
    params["run_id"] = run_id
    sql = f"""
SELECT {CREATED_US} AS created_us
FROM {TABLE}
WHERE {where} AND id = %(run_id)s"""
    return Query(sql, params)


def run_detail(
    tenant_id: str, app_id: str, run_id: str, *, start_us: int | None = None, end_us: int | None = None
) -> Query:
    """The run's row if it belongs to the tenant/app (any trigger) and, with bounds, was created
    in [start_us, end_us)."""
    scope = RunScope(tenant_id=tenant_id, app_id=app_id, triggered_from="", start_us=start_us, end_us=end_us)
    where, params = _scope_where(scope, with_trigger=False)
    params["run_id"] = run_id
    sql = f"""
SELECT {_columns(DETAIL_COLUMNS)}
FROM {TABLE}
WHERE {where} AND id = %(run_id)s"""
    return Query(sql, params)


def apps_with_runs(since_epoch_s: int, before_us: int | None = None, limit: int = 500) -> Query:
    """(tenant_id, app_id, runs) created since the instant (and before `before_us`), busiest first."""
    params: dict[str, object] = {"since": _naive_utc(since_epoch_s * 1_000_000), "limit": int(limit)}
    before = ""
    if before_us is not None:
        before = " AND created_at < %(before)s"
        params["before"] = _naive_utc(before_us)
    sql = f"""
SELECT CAST(tenant_id AS text) AS tenant_id, CAST(app_id AS text) AS app_id, count(*) AS runs
FROM {TABLE}
WHERE created_at >= %(since)s{before}
GROUP BY tenant_id, app_id
ORDER BY runs DESC, app_id
LIMIT %(limit)s"""
    return Query(sql, params)
