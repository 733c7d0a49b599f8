"""One run's node executions (the run detail's tracing panel), in keyset pages.

A run's node executions are what Dify's console lists for the run: one entry per execution `id`
at its latest version, every execution of the run (tenant, app, workflow_run_id) except those
triggered from `workflow-tool` (a workflow-as-tool's internals), ordered by created time, then
`index`, then `id`. Keyset pages on that unique order, each statement with a top-level LIMIT.

Where they are read:
- the LogStore `workflow_node_execution` (one row per state change): its latest version per id
  in one complete order of versions, `NODE_LATEST_FIRST` (log_version, then __time__, then every
  other column), so no answer depends on how rows arrive or on what SLS leaves unspecified;
- Dify's `workflow_node_executions` (one row per execution, updated in place), for runs read
  from `workflow_runs`.

Plans on the LogStore:
- shortcut: `created_at`, `index`, `id` and `triggered_from` never change between the versions
  of an execution (Dify's writer), so the page's keyset and the workflow-tool filter apply to
  versions, before the latest one is chosen: a later page never ranks the versions of earlier
  ones again;
- windowed: the latest version of every execution of the run, then the filter and the keyset.

`__time__` is bounded by the run: no node execution is written before the run was created (up to
STATS_TIME_SLACK) nor, once the run has finished, after its last version (Dify writes the run's
finished version once its nodes have ended); `RunSpan` gives both from the run's own versions.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from queries.checks import schema_probe
from queries.dialects import Dialect, created_text_sql, epoch_us_sql, parse_once_fence
from queries.scope import LOGSTORE_TABLE, Query, RunScope, created_range_where, keyset_where, time_where
from queries.workflow_runs import CREATED_US, WORKFLOW_RUNS_TABLE, iso_text, naive_utc, workflow_runs_where

NODE_LOGSTORE = "workflow_node_execution"
NODE_TABLE = "workflow_node_executions"  # Dify's own
# Node executions per statement. Each statement ranks the versions of every execution it may
# answer (all those after its keyset), whatever its LIMIT: fewer, larger pages cost less, and a
# run within the default STATS_NODE_EXECUTIONS_MAX is one statement. SLS allows LIMIT up to
# 1,000,000 and cuts each text field at 2 KB: a page is at most some 100 MB, typically a few.
NODE_PAGE = 10_000
WORKFLOW_TOOL = "workflow-tool"
NodePlan = Literal["shortcut", "windowed", "workflow_runs"]

# Every column of a node execution the answers show, in the LogStore's text forms.
NODE_COLUMNS = (
    "id", '"index"', "predecessor_node_id", "node_id", "node_type", "title", "inputs", "process_data",
    "outputs", "status", "error", "elapsed_time", "execution_metadata", "created_at", "created_by_role",
    "created_by", "finished_at",
)  # fmt: skip

# The latest version first, in an order that is complete (any two versions that differ anywhere
# are ordered): the truth is the largest log_version, then __time__; past those, versions that
# tie are ordered by every other column (text byte-wise, as SLS compares it), NULL last.
_TIE_BREAKERS = (
    "status", "finished_at", "elapsed_time", "outputs", "process_data", "inputs", "execution_metadata",
    "error", "title", "predecessor_node_id", "node_execution_id", "node_id", "node_type", '"index"',
    "created_at", "created_by_role", "created_by", "triggered_from", "workflow_id",
)  # fmt: skip
NODE_LATEST_FIRST = ", ".join(
    [f"{column} DESC NULLS LAST" for column in ("log_version", "__time__", *_TIE_BREAKERS)]
)
_RANKED_COLUMNS = tuple(dict.fromkeys(("log_version", "__time__", *NODE_COLUMNS, *_TIE_BREAKERS)))
NODE_KEY = ("created_key", '"index"', "id")  # the answer's order; unique
NODE_ORDER = ", ".join(f"{column} NULLS LAST" for column in NODE_KEY)  # created_key is never NULL


class NodeKey(msgspec.Struct, frozen=True):
    """Keyset position: the (created_key, index, id) of the last node execution read."""

    created_key: int  # created time, µs since the epoch; -1 when it does not parse
    index: int
    id: str


class NodeScope(msgspec.Struct, frozen=True, kw_only=True):
    """One run's node executions: where they are, how they are read, and the run's write-time
    bounds (None: unbounded on that side)."""

    tenant_id: str
    app_id: str
    run_id: str
    dialect: Dialect = "postgres"
    plan: NodePlan = "shortcut"
    min_time_s: int | None = None
    max_time_s: int | None = None

    def params(self) -> dict[str, object]:
        values: dict[str, object] = {
            "tenant_id": self.tenant_id,
            "app_id": self.app_id,
            "run_id": self.run_id,
            "workflow_tool": WORKFLOW_TOOL,
        }
        if self.min_time_s is not None:
            values["min_time"] = self.min_time_s
        if self.max_time_s is not None:
            values["max_time"] = self.max_time_s
        return values

    def time_where(self) -> str:
        """Every LogStore statement has a `__time__` condition (`> 0` asks for everything)."""
        clauses = []
        if self.min_time_s is not None:
            clauses.append("__time__ >= %(min_time)s")
        if self.max_time_s is not None:
            clauses.append("__time__ <= %(max_time)s")
        return " AND ".join(clauses) or "__time__ > 0"


def run_span(scope: RunScope, run_id: str) -> Query:
    """One row about `run_id` if it is a run of the scope's tenant and app created in the scope's
    range: `versions` (0: no such run), `created_us`, `last_written_s` (its latest write time;
    NULL for Dify's table) and `finished` (1 once a finished version exists)."""
    if scope.plan == "workflow_runs":
        where, params = workflow_runs_where(scope)
        params["run_id"] = run_id
        sql = f"""
SELECT count(*) AS versions, min({CREATED_US}) AS created_us, CAST(NULL AS bigint) AS last_written_s,
       max(CASE WHEN finished_at IS NOT NULL THEN 1 ELSE 0 END) AS finished
FROM {WORKFLOW_RUNS_TABLE}
WHERE {where} AND id = %(run_id)s
LIMIT 1"""
        return Query(sql, params)
    params = scope.params()
    params["run_id"] = run_id
    sql = f"""
SELECT count(*) AS versions, min(created_us) AS created_us, max(__time__) AS last_written_s,
       max(CASE WHEN coalesce(finished_at, '') <> '' THEN 1 ELSE 0 END) AS finished
FROM (
    SELECT __time__, finished_at, {epoch_us_sql(scope.dialect, created_text_sql())} AS created_us
    FROM {LOGSTORE_TABLE}
    WHERE tenant_id = %(tenant_id)s AND app_id = %(app_id)s AND id = %(run_id)s AND {time_where(scope)}
) AS versions
WHERE {created_range_where(scope)}
LIMIT 1"""
    return Query(sql, params)


def node_page(scope: NodeScope, after: NodeKey | None, size: int = NODE_PAGE) -> Query:
    """Up to `size` node executions of the run after `after`, in the answer's order: the columns
    of NODE_COLUMNS plus `created_key` (created time in µs, -1 when it does not parse) and
    `finished_us` (finished time in µs; NULL while unfinished or unparsable), parsed here for the
    answer's rows only."""
    if scope.plan == "workflow_runs":
        return _table_page(scope, after, size)
    params = scope.params()
    position = None if after is None else (after.created_key, after.index, after.id)
    keyset, values = keyset_where(NODE_KEY, position)
    params.update(values)
    created_key = f"coalesce({epoch_us_sql(scope.dialect, 'created_at')}, -1)"
    run_rows = (
        f"tenant_id = %(tenant_id)s AND app_id = %(app_id)s AND workflow_run_id = %(run_id)s "
        f"AND {scope.time_where()}"
    )
    not_tool = "(triggered_from IS NULL OR triggered_from <> %(workflow_tool)s)"
    columns = ", ".join(NODE_COLUMNS)
    answered = f"{columns}, created_key, {epoch_us_sql(scope.dialect, 'finished_at')} AS finished_us"
    if scope.plan == "shortcut" and after is not None:
        # The keyset on versions: each version's created time is parsed, the earlier pages'
        # versions are never ranked again.
        sql = f"""
SELECT {answered}
FROM (
    SELECT {columns}, created_key,
           ROW_NUMBER() OVER (PARTITION BY id ORDER BY {NODE_LATEST_FIRST}) AS version_rank
    FROM (
        SELECT {", ".join(_RANKED_COLUMNS)}, {created_key} AS created_key
        FROM {NODE_LOGSTORE}
        WHERE {run_rows} AND {not_tool}{parse_once_fence(scope.dialect)}
    ) AS versions
    WHERE {keyset}
) AS ranked
WHERE version_rank = 1
ORDER BY {NODE_ORDER}
LIMIT {int(size)}"""
        return Query(sql, params, page_size=size)
    # Rank first; only the latest versions' created times are parsed. The shortcut's first page
    # leaves workflow-tool versions out before ranking (the field never changes), the windowed
    # plan after.
    before, after_rank = (f" AND {not_tool}", "") if scope.plan == "shortcut" else ("", f"{not_tool} AND ")
    sql = f"""
SELECT {answered}
FROM (
    SELECT {columns}, triggered_from, {created_key} AS created_key
    FROM (
        SELECT {", ".join(_RANKED_COLUMNS)},
               ROW_NUMBER() OVER (PARTITION BY id ORDER BY {NODE_LATEST_FIRST}) AS version_rank
        FROM {NODE_LOGSTORE}
        WHERE {run_rows}{before}
    ) AS versions
    WHERE version_rank = 1{parse_once_fence(scope.dialect)}
) AS latest
WHERE {after_rank}{keyset}
ORDER BY {NODE_ORDER}
LIMIT {int(size)}"""
    return Query(sql, params, page_size=size)


# Dify's table read as the LogStore's columns (same names, same text forms).
_TABLE_COLUMNS = {
    "id": "CAST(id AS text)",
    "predecessor_node_id": "coalesce(predecessor_node_id, '')",
    "inputs": "coalesce(inputs, '')",
    "process_data": "coalesce(process_data, '')",
    "outputs": "coalesce(outputs, '')",
    "error": "coalesce(error, '')",
    "execution_metadata": "coalesce(execution_metadata, '')",
    "created_at": iso_text("created_at"),
    "created_by": "CAST(created_by AS text)",
    "finished_at": iso_text("finished_at"),
}


def _table_page(scope: NodeScope, after: NodeKey | None, size: int) -> Query:
    """Dify's table: the row is the execution; its (created_at, index, id) order is the answer's
    (a UUID orders as its canonical text)."""
    params: dict[str, object] = {
        "tenant_id": scope.tenant_id,
        "app_id": scope.app_id,
        "run_id": scope.run_id,
        "workflow_tool": WORKFLOW_TOOL,
    }
    keyset = ""
    if after is not None:
        keyset = 'AND (created_at, "index", id) > (%(after_at)s, %(after_index)s, CAST(%(after_id)s AS uuid))'
        params.update(after_at=naive_utc(after.created_key), after_index=after.index, after_id=after.id)
    columns = ", ".join(
        f"{_TABLE_COLUMNS[name]} AS {name}" if name in _TABLE_COLUMNS else name for name in NODE_COLUMNS
    )
    sql = f"""
SELECT {columns}, {CREATED_US} AS created_key,
       CAST(round(date_part('epoch', finished_at) * 1000000) AS bigint) AS finished_us
FROM {NODE_TABLE}
WHERE tenant_id = %(tenant_id)s AND app_id = %(app_id)s AND workflow_run_id = %(run_id)s
  AND triggered_from <> %(workflow_tool)s {keyset}
ORDER BY {NODE_TABLE}.created_at, {NODE_TABLE}."index", {NODE_TABLE}.id
LIMIT {int(size)}"""
    return Query(sql, params, page_size=size)


def node_logstore_probe(dialect: Dialect, now_s: int) -> Query:
    """At most one row of every field the node statements read, `__time__`-bounded as every
    LogStore check (queries/checks.py): fails when the node logstore or one of its fields is
    missing."""
    fields = tuple(dict.fromkeys(("tenant_id", "app_id", "workflow_run_id", *_RANKED_COLUMNS)))
    return schema_probe(NODE_LOGSTORE, fields, dialect, now_s)
