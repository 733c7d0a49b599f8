"""Dify's own LogStore SQL, written out so a reader sees what the benchmark compares against.

Dify's LogstoreAPIWorkflowRunRepository gets current state with the latest-records query below:
`ROW_NUMBER() OVER (PARTITION BY id ORDER BY log_version DESC)` over every version of the app's
runs with `__time__ > 0` (no pruning). Each measure then aggregates those latest rows the way
Dify's PostgreSQL repository does (created time in range, grouped by day). The created-time and
day expressions are plain text operations (UTC days), cheaper than ours, so the comparison
measures the window's cost, not a different parse.
"""

from __future__ import annotations

from queries.scope import Query

LATEST_RECORDS = """
SELECT * FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY log_version DESC) AS rn
    FROM workflow_execution
    WHERE tenant_id = %(tenant_id)s AND app_id = %(app_id)s AND __time__ > 0
) AS t
WHERE rn = 1"""

_IN_RANGE = """triggered_from = %(triggered_from)s
  AND coalesce(nullif(created_at, ''), started_at) >= %(start_iso)s
  AND coalesce(nullif(created_at, ''), started_at) < %(end_iso)s"""

_AGGREGATES = {
    "daily_runs": "count(*)",
    "daily_terminals": "count(DISTINCT created_by)",
    "daily_token_costs": "sum(total_tokens)",
    "daily_interactions": "count(*), count(DISTINCT created_by)",
}


def dify_daily(measure: str, params: dict[str, object]) -> Query:
    sql = f"""
SELECT substr(coalesce(nullif(created_at, ''), started_at), 1, 10) AS date, {_AGGREGATES[measure]}
FROM ({LATEST_RECORDS}) AS latest
WHERE {_IN_RANGE}
GROUP BY 1 ORDER BY 1"""
    return Query(sql, params)


def dify_status_counts(params: dict[str, object]) -> Query:
    sql = f"""
SELECT status, count(*) FROM ({LATEST_RECORDS}) AS latest
WHERE {_IN_RANGE}
GROUP BY status"""
    return Query(sql, params)


def dify_run_page(params: dict[str, object], offset: int) -> Query:
    """Dify pages its run list with LIMIT after the window (offset pages, as SLS allows)."""
    sql = f"""
SELECT * FROM ({LATEST_RECORDS}) AS latest
WHERE triggered_from = %(triggered_from)s
ORDER BY created_at DESC
LIMIT 21 OFFSET {int(offset)}"""
    return Query(sql, params)
