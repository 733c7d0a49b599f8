"""The run list (keyset pages), the cursor lookup, and one run's detail.

Order is created time descending, then id descending. The cursor is the pair (created_us, id) of
the last run shown, so runs sharing a created time are neither skipped nor repeated.

- Page shortcut, in two statements: the page's ids from one GROUP BY id (created time is
  immutable; status via queries/versions.py), then the latest version of just those ids, named
  as literals (SLS takes LIMIT only on a final result, so the ids cannot be a limited subquery).
- Page windowed: the latest version of every run, filtered, ordered, limited.
- Page workflow_runs: Dify's table in the order of its (created_at, id) index.
- Detail: a run's rows are few; the shortcut orders them and keeps the first, the windowed plan
  ranks them with ROW_NUMBER().
"""

from __future__ import annotations

import msgspec

from queries.dialects import created_text_sql, epoch_us_sql
from queries.rows import DETAIL_COLUMNS, SUMMARY_COLUMNS
from queries.scope import (
    LOGSTORE_TABLE,
    Query,
    RunScope,
    app_rows_where,
    created_range_where,
    time_where,
)
from queries.versions import latest_first_sql, latest_versions_sql, run_states_sql
from queries.workflow_runs import (
    CREATED_US,
    WORKFLOW_RUNS_TABLE,
    as_logstore_columns,
    naive_utc,
    workflow_runs_where,
)


class RunCursor(msgspec.Struct, frozen=True):
    """Keyset position: the (created_us, id) of the last run already shown."""

    created_us: int
    id: str


# The list order, NULLs last said explicitly (Presto and PostgreSQL differ on a DESC order).
LIST_ORDER = "created_us DESC NULLS LAST, id DESC NULLS LAST"


def run_page(scope: RunScope, limit: int, status: str | None, after: RunCursor | None) -> Query:
    """Up to `limit` runs in list order after the cursor; callers ask for one more than they show
    to learn whether there is a next page.

    Windowed and workflow_runs: rows of summary columns + created_us. Shortcut: the page's keys,
    rows `(id, created_us)` (a RunCursor each), whose summaries `run_page_rows` then reads."""
    if scope.plan == "workflow_runs":
        return _workflow_runs_page(scope, limit, status, after)
    if scope.plan == "windowed":
        return _windowed_page(scope, limit, status, after)
    return _shortcut_page_keys(scope, limit, status, after)


def _page_where(scope: RunScope, status: str | None, after: RunCursor | None) -> str:
    clauses = [created_range_where(scope)]
    if status is not None:
        clauses.append("status = %(status)s")
    if after is not None:
        clauses.append(
            "(created_us < %(after_created_us)s OR (created_us = %(after_created_us)s AND id < %(after_id)s))"
        )
    return " AND ".join(clauses)


def _page_params(
    scope: RunScope, limit: int, status: str | None, after: RunCursor | None
) -> dict[str, object]:
    params = scope.params()
    params["limit"] = int(limit)
    if status is not None:
        params["status"] = status
    if after is not None:
        params["after_created_us"] = after.created_us
        params["after_id"] = after.id
    return params


def _shortcut_page_keys(scope: RunScope, limit: int, status: str | None, after: RunCursor | None) -> Query:
    sql = f"""
SELECT id, created_us
FROM ({run_states_sql(scope)}
) AS runs
WHERE {_page_where(scope, status, after)}
ORDER BY {LIST_ORDER}
LIMIT %(limit)s"""
    return Query(sql, _page_params(scope, limit, status, after))


def run_page_rows(scope: RunScope, keys: list[RunCursor]) -> Query:
    """The shortcut page's second statement: the latest version's summary columns (+ created_us)
    of the runs `keys` named, in list order. Their rows were all written at or after the oldest
    one's created time, which bounds `__time__` (less the slack)."""
    assert keys, "an empty page needs no second statement"
    oldest = msgspec.structs.replace(scope, start_us=min(key.created_us for key in keys), end_us=None)
    params = oldest.params()
    names = []
    for position, key in enumerate(keys):
        params[f"id_{position}"] = key.id
        names.append(f"%(id_{position})s")
    params["limit"] = len(keys)
    sql = f"""
SELECT {", ".join(SUMMARY_COLUMNS)}, created_us
FROM (
    SELECT {", ".join(SUMMARY_COLUMNS)},
           {epoch_us_sql(scope.dialect, created_text_sql())} AS created_us,
           ROW_NUMBER() OVER (PARTITION BY id ORDER BY {latest_first_sql(scope.dialect)}) AS version_rank
    FROM {LOGSTORE_TABLE}
    WHERE tenant_id = %(tenant_id)s AND app_id = %(app_id)s AND {time_where(oldest)}
      AND id IN ({", ".join(names)})
) AS latest
WHERE version_rank = 1
ORDER BY {LIST_ORDER}
LIMIT %(limit)s"""
    return Query(sql, params)


def _windowed_page(scope: RunScope, limit: int, status: str | None, after: RunCursor | None) -> Query:
    sql = f"""
SELECT {", ".join(SUMMARY_COLUMNS)}, created_us
FROM ({latest_versions_sql(scope, SUMMARY_COLUMNS)}
) AS latest
WHERE {_page_where(scope, status, after)}
ORDER BY {LIST_ORDER}
LIMIT %(limit)s"""
    return Query(sql, _page_params(scope, limit, status, after))


def _workflow_runs_page(scope: RunScope, limit: int, status: str | None, after: RunCursor | None) -> Query:
    where, params = workflow_runs_where(scope)
    if status is not None:
        where += " AND status = %(status)s"
        params["status"] = status
    if after is not None:
        where += " AND (created_at < %(after_at)s OR (created_at = %(after_at)s AND id < %(after_id)s))"
        params["after_at"] = naive_utc(after.created_us)
        params["after_id"] = after.id
    params["limit"] = int(limit)
    sql = f"""
SELECT {as_logstore_columns(SUMMARY_COLUMNS)}, {CREATED_US} AS created_us
FROM {WORKFLOW_RUNS_TABLE}
WHERE {where}
ORDER BY workflow_runs.created_at DESC, workflow_runs.id DESC  -- the columns, not the text forms above
LIMIT %(limit)s"""
    return Query(sql, params)


def run_cursor(scope: RunScope, run_id: str) -> Query:
    """Row `(created_us)` of `run_id` if it is a run of this tenant/app/trigger source created in
    the scope's range (else no row). Every plan reads it the same way: the fields it reads never
    change between versions."""
    if scope.plan == "workflow_runs":
        where, params = workflow_runs_where(scope)
        sql = f"""
SELECT {CREATED_US} AS created_us
FROM {WORKFLOW_RUNS_TABLE}
WHERE {where} AND id = %(run_id)s
LIMIT 1"""
    else:
        params = scope.params()
        sql = f"""
SELECT created_us
FROM (
    SELECT {epoch_us_sql(scope.dialect, created_text_sql())} AS created_us
    FROM {LOGSTORE_TABLE}
    WHERE {app_rows_where(scope)} AND id = %(run_id)s
) AS run
WHERE {created_range_where(scope)}
LIMIT 1"""
    params["run_id"] = run_id
    return Query(sql, params)


def run_detail(scope: RunScope, run_id: str) -> Query:
    """The detail columns of `run_id` if it is a run of the scope's tenant and app (any trigger
    source) created in the scope's range; bounds route between two sources by created time, which
    is the same in every version."""
    if scope.plan == "workflow_runs":
        where, params = workflow_runs_where(scope)
        params["run_id"] = run_id
        sql = f"""
SELECT {as_logstore_columns(DETAIL_COLUMNS)}
FROM {WORKFLOW_RUNS_TABLE}
WHERE {where} AND id = %(run_id)s
LIMIT 1"""
        return Query(sql, params)
    clauses = ["tenant_id = %(tenant_id)s", "app_id = %(app_id)s", "id = %(run_id)s", time_where(scope)]
    created_us = epoch_us_sql(scope.dialect, created_text_sql())
    if scope.start_us is not None:
        clauses.append(f"{created_us} >= %(start_us)s")
    if scope.end_us is not None:
        clauses.append(f"{created_us} < %(end_us)s")
    params = scope.params()
    params["run_id"] = run_id
    columns, where = ", ".join(DETAIL_COLUMNS), " AND ".join(clauses)
    if scope.plan == "windowed":
        sql = f"""
SELECT {columns}
FROM (
    SELECT {columns},
           ROW_NUMBER() OVER (PARTITION BY id ORDER BY {latest_first_sql(scope.dialect)}) AS version_rank
    FROM {LOGSTORE_TABLE}
    WHERE {where}
) AS versions
WHERE version_rank = 1
LIMIT 1"""
    else:
        sql = f"""
SELECT {columns}
FROM {LOGSTORE_TABLE}
WHERE {where}
ORDER BY {latest_first_sql(scope.dialect)}
LIMIT 1"""
    return Query(sql, params)
