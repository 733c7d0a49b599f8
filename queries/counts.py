"""Counts by status: rows `(status, runs)` for runs created in the scope's range.

The shortcut reads each run's status from one GROUP BY id (see queries/versions.py for why that
is exact); the windowed plan takes the latest version of every run. With `status`, only that
status' row comes back.
"""

from __future__ import annotations

from queries.scope import Query, RunScope, created_range_where
from queries.versions import latest_versions_sql, run_states_sql


def _count_by_status(runs_sql: str, scope: RunScope, status: str | None) -> Query:
    status_filter = " AND status = %(status)s" if status is not None else ""
    sql = f"""
SELECT status, count(*) AS runs
FROM ({runs_sql}
) AS runs
WHERE {created_range_where(scope)}{status_filter}
GROUP BY status
ORDER BY status"""
    params = scope.params()
    if status is not None:
        params["status"] = status
    return Query(sql, params)


def status_counts_shortcut(scope: RunScope, status: str | None = None) -> Query:
    return _count_by_status(run_states_sql(scope), scope, status)


def status_counts_windowed(scope: RunScope, status: str | None = None) -> Query:
    return _count_by_status(latest_versions_sql(scope, ("status",)), scope, status)
