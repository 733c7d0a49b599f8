"""Counts by status: rows `(status, runs)` for runs created in the scope's range, ordered by
status. With `status`, only that status' row comes back.

- shortcut: each run's status from one GROUP BY id (queries/versions.py says why that is exact);
- windowed: the latest version of every run;
- workflow_runs: Dify's table, whose row is the run.
"""

from __future__ import annotations

from queries.scope import Query, RunScope, created_range_where
from queries.versions import latest_versions_sql, run_states_sql
from queries.workflow_runs import WORKFLOW_RUNS_TABLE, workflow_runs_where


def status_counts(scope: RunScope, status: str | None = None) -> Query:
    if scope.plan == "workflow_runs":
        table_where, params = workflow_runs_where(scope)
        runs_sql, created_where = f"SELECT status FROM {WORKFLOW_RUNS_TABLE} WHERE {table_where}", "1 = 1"
    else:
        params, created_where = scope.params(), created_range_where(scope)
        if scope.plan == "windowed":
            runs_sql = latest_versions_sql(scope, ("status",))
        else:
            runs_sql = run_states_sql(scope)
    status_filter = ""
    if status is not None:
        status_filter = " AND status = %(status)s"
        params["status"] = status
    sql = f"""
SELECT status, count(*) AS runs
FROM ({runs_sql}
) AS runs
WHERE {created_where}{status_filter}
GROUP BY status
ORDER BY status"""
    return Query(sql, params)
