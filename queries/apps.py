"""The apps that have runs, for Grafana's app pickers.

Tenant and app never change between versions, so one plan serves both settings; counting
distinct ids ranks busier apps first. Pruned to recent rows: a picker lists live apps.
"""

from __future__ import annotations

from queries.scope import TABLE, Query


def apps_with_runs(since_epoch_s: int, limit: int = 500) -> Query:
    sql = f"""
SELECT tenant_id, app_id, count(DISTINCT id) AS runs
FROM {TABLE}
WHERE __time__ >= %(since)s
GROUP BY tenant_id, app_id
ORDER BY runs DESC, app_id
LIMIT %(limit)s"""
    return Query(sql, {"since": int(since_epoch_s), "limit": int(limit)})
