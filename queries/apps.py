"""Rows `(tenant_id, app_id, runs)` of the apps with runs, busiest first, for app pickers.

Tenant and app never change between versions, so both LogStore plans read it the same way:
distinct ids of the rows written since the instant (a picker lists live apps). Dify's table counts
the runs created since the instant and, during a migration, before the LogStore's part begins.
"""

from __future__ import annotations

from queries.scope import LOGSTORE_TABLE, Plan, Query
from queries.workflow_runs import WORKFLOW_RUNS_TABLE, naive_utc

APPS_LIMIT = 500


def apps_with_runs(plan: Plan, since_epoch_s: int, before_us: int | None = None) -> Query:
    if plan != "workflow_runs":
        sql = f"""
SELECT tenant_id, app_id, count(DISTINCT id) AS runs
FROM {LOGSTORE_TABLE}
WHERE __time__ >= %(since)s
GROUP BY tenant_id, app_id
ORDER BY runs DESC, app_id
LIMIT %(limit)s"""
        return Query(sql, {"since": int(since_epoch_s), "limit": APPS_LIMIT})
    params: dict[str, object] = {"since": naive_utc(since_epoch_s * 1_000_000), "limit": APPS_LIMIT}
    before = ""
    if before_us is not None:
        before = " AND created_at < %(before)s"
        params["before"] = naive_utc(before_us)
    sql = f"""
SELECT CAST(tenant_id AS text) AS tenant_id, CAST(app_id AS text) AS app_id, count(*) AS runs
FROM {WORKFLOW_RUNS_TABLE}
WHERE created_at >= %(since)s{before}
GROUP BY tenant_id, app_id
ORDER BY runs DESC, app_id
LIMIT %(limit)s"""
    return Query(sql, params)
