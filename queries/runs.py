"""The run list (keyset pages) and one run's detail.

Order is created time descending, then id descending. The cursor is the pair (created_us, id) of
the last run shown, so runs sharing a created time are neither skipped nor repeated.

- Page shortcut: pick the page's ids from one GROUP BY id (created time is immutable; status via
  queries/versions.py), then take the latest version of just those ids.
- Page windowed: the latest version of every run, filtered, ordered, limited.
- Detail: the run's rows are few, so the shortcut is an ORDER BY ... LIMIT 1 on its id.
"""

from __future__ import annotations

import msgspec

from queries.dialects import Dialect, created_text_sql, epoch_us_sql
from queries.scope import LATEST_FIRST, TABLE, Query, RunScope, app_rows_where, created_range_where
from queries.versions import latest_versions_sql, run_states_sql

SUMMARY_COLUMNS = (
    "id",
    "version",
    "status",
    "elapsed_time",
    "total_tokens",
    "total_steps",
    "created_by_role",
    "created_by",
    "created_at",
    "started_at",
    "finished_at",
    "exceptions_count",
)
DETAIL_COLUMNS = (
    *SUMMARY_COLUMNS,
    "tenant_id",
    "app_id",
    "workflow_id",
    "type",
    "triggered_from",
    "graph",
    "inputs",
    "outputs",
    "error_message",
)


class RunPage(msgspec.Struct, frozen=True):
    """Keyset position: the (created_us, id) of the last run already shown."""

    after_created_us: int
    after_id: str


def _page_where(scope: RunScope, status: str | None, after: RunPage | None) -> str:
    clauses = [created_range_where(scope)] if scope.start_us is not None or scope.end_us is not None else []
    if status is not None:
        clauses.append("status = %(status)s")
    if after is not None:
        clauses.append(
            "(created_us < %(after_created_us)s OR (created_us = %(after_created_us)s AND id < %(after_id)s))"
        )
    return " AND ".join(clauses) or "1 = 1"


def _page_params(scope: RunScope, limit: int, status: str | None, after: RunPage | None) -> dict[str, object]:
    params = scope.params()
    params["limit"] = int(limit)
    if status is not None:
        params["status"] = status
    if after is not None:
        params["after_created_us"] = after.after_created_us
        params["after_id"] = after.after_id
    return params


def run_page_shortcut(scope: RunScope, limit: int, status: str | None, after: RunPage | None) -> Query:
    """Up to `limit` runs (summary columns + created_us); ask for limit + 1 to learn has_more."""
    columns = ", ".join(f"latest.{c}" for c in SUMMARY_COLUMNS)
    sql = f"""
WITH page AS (
    SELECT id, created_us
    FROM ({run_states_sql(scope)}
    ) AS runs
    WHERE {_page_where(scope, status, after)}
    ORDER BY created_us DESC, id DESC
    LIMIT %(limit)s
)
SELECT {columns}, page.created_us
FROM (
    SELECT {", ".join(SUMMARY_COLUMNS)},
           ROW_NUMBER() OVER (PARTITION BY id ORDER BY {LATEST_FIRST}) AS version_rank
    FROM {TABLE}
    WHERE tenant_id = %(tenant_id)s AND app_id = %(app_id)s AND id IN (SELECT id FROM page)
) AS latest
JOIN page ON page.id = latest.id
WHERE latest.version_rank = 1
ORDER BY page.created_us DESC, page.id DESC"""
    return Query(sql, _page_params(scope, limit, status, after))


def run_page_windowed(scope: RunScope, limit: int, status: str | None, after: RunPage | None) -> Query:
    sql = f"""
SELECT {", ".join(SUMMARY_COLUMNS)}, created_us
FROM ({latest_versions_sql(scope, SUMMARY_COLUMNS)}
) AS latest
WHERE {_page_where(scope, status, after)}
ORDER BY created_us DESC, id DESC
LIMIT %(limit)s"""
    return Query(sql, _page_params(scope, limit, status, after))


def run_cursor(scope: RunScope, run_id: str) -> Query:
    """created_us of `run_id` if it is a run of this tenant/app/trigger source created in the
    scope's range (else no row).

    Same in both plans: the fields it reads never change between versions."""
    sql = f"""
SELECT created_us
FROM (
    SELECT {epoch_us_sql(scope.dialect, created_text_sql())} AS created_us
    FROM {TABLE}
    WHERE {app_rows_where(scope, with_trigger=True)} AND id = %(run_id)s
    LIMIT 1
) AS run
WHERE {created_range_where(scope)}"""
    params = scope.params()
    params["run_id"] = run_id
    return Query(sql, params)


def _detail_filter(
    dialect: Dialect, tenant_id: str, app_id: str, run_id: str, start_us: int | None, end_us: int | None
) -> tuple[str, dict[str, object]]:
    """The run's rows; with bounds, only if its created time is in [start_us, end_us) (routing
    between two sources by created time; the created time is the same in every version)."""
    clauses = ["tenant_id = %(tenant_id)s", "app_id = %(app_id)s", "id = %(run_id)s"]
    params: dict[str, object] = {"tenant_id": tenant_id, "app_id": app_id, "run_id": run_id}
    created_us = epoch_us_sql(dialect, created_text_sql())
    if start_us is not None:
        clauses.append(f"{created_us} >= %(start_us)s")
        params["start_us"] = start_us
    if end_us is not None:
        clauses.append(f"{created_us} < %(end_us)s")
        params["end_us"] = end_us
    return " AND ".join(clauses), params


def run_detail_shortcut(
    tenant_id: str, app_id: str, run_id: str, *,
    start_us: int | None = None, end_us: int | None = None, dialect: Dialect = "postgres",
) -> Query:  # fmt: skip
    where, params = _detail_filter(dialect, tenant_id, app_id, run_id, start_us, end_us)
    sql = f"""
SELECT {", ".join(DETAIL_COLUMNS)}
FROM {TABLE}
WHERE {where}
ORDER BY {LATEST_FIRST}
LIMIT 1"""
    return Query(sql, params)


def run_detail_windowed(
    tenant_id: str, app_id: str, run_id: str, *,
    start_us: int | None = None, end_us: int | None = None, dialect: Dialect = "postgres",
) -> Query:  # fmt: skip
    where, params = _detail_filter(dialect, tenant_id, app_id, run_id, start_us, end_us)
    sql = f"""
SELECT {", ".join(DETAIL_COLUMNS)}
FROM (
    SELECT {", ".join(DETAIL_COLUMNS)},
           ROW_NUMBER() OVER (PARTITION BY id ORDER BY {LATEST_FIRST}) AS version_rank
    FROM {TABLE}
    WHERE {where}
) AS versions
WHERE version_rank = 1"""
    return Query(sql, params)
