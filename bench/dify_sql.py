"""Dify's LogStore SQL, written out so a reader sees what the benchmark compares against.

Two yardsticks:

- Dify windowed (`windowed_*`): the latest version of every run of the app by
  `ROW_NUMBER() OVER (PARTITION BY id ORDER BY log_version DESC)` over its whole history
  (`__time__ > 0`, no pruning), then each measure aggregated over those rows by created day, as
  Dify's PostgreSQL repository does. That is what any *exact* reader of the LogStore needs when it
  relies on nothing but the latest version; the benchmark's targets are ratios against it. Its
  created-time and day expressions are plain text operations (UTC days), cheaper than ours, so
  the comparison measures the window's cost, not a different parse.
- Dify actual (`actual_*`): the statistics SQL Dify's LogstoreAPIWorkflowRunRepository really
  sends. It reads finished *versions* only, bucketed by *write* time (`__time__`, UTC days; the
  requested zone is ignored). Fast, but not the truth: a retried run's two finished versions both
  count (tokens twice), unfinished runs are missing, a run finishing after midnight lands on the
  next day. bench/accuracy.py measures how far its numbers are from ours on the same data.
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

# A finished run's duration as a plain reader takes it: elapsed_time, else finished - started.
_DURATION = """CASE WHEN finished_at <> '' THEN coalesce(elapsed_time, date_part('epoch',
    CAST(finished_at AS timestamp) - CAST(started_at AS timestamp))) END"""
_WINDOWED_AGGREGATES = {
    "daily_runs": "count(*)",
    "daily_terminals": "count(DISTINCT created_by)",
    "daily_token_costs": "sum(total_tokens)",
    "daily_interactions": "count(*), count(DISTINCT created_by)",
    # Dify has neither: the plain SQL an exact reader would write over the same latest versions,
    # with PostgreSQL's own nearest-rank percentiles (percentile_disc).
    "daily_status": ", ".join(
        f"count(CASE WHEN status = '{status}' THEN 1 END)"
        for status in ("succeeded", "failed", "stopped", "partial-succeeded", "running", "paused")
    ),
    "daily_duration": ", ".join(
        [
            f"count({_DURATION})",
            *(f"percentile_disc({p}) WITHIN GROUP (ORDER BY {_DURATION})" for p in (0.5, 0.95, 0.99)),
            f"max({_DURATION})",
        ]
    ),
}


def windowed_daily(measure: str, params: dict[str, object]) -> Query:
    """One daily measure over the latest version of every run, by created day (UTC)."""
    sql = f"""
SELECT substr(coalesce(nullif(created_at, ''), started_at), 1, 10) AS date, {_WINDOWED_AGGREGATES[measure]}
FROM ({LATEST_RECORDS}) AS latest
WHERE {_IN_RANGE}
GROUP BY 1 ORDER BY 1"""
    return Query(sql, params)


def windowed_status_counts(params: dict[str, object]) -> Query:
    sql = f"""
SELECT status, count(*) FROM ({LATEST_RECORDS}) AS latest
WHERE {_IN_RANGE}
GROUP BY status"""
    return Query(sql, params)


def windowed_run_page(params: dict[str, object], offset: int) -> Query:
    """Dify pages its run list with LIMIT after the window (offset pages, as SLS allows)."""
    sql = f"""
SELECT * FROM ({LATEST_RECORDS}) AS latest
WHERE triggered_from = %(triggered_from)s
ORDER BY created_at DESC
LIMIT 21 OFFSET {int(offset)}"""
    return Query(sql, params)


# --- Dify actual ------------------------------------------------------------------------------
# Dify filters `finished_at IS NOT NULL`. SLS reads an empty text field as null; the PostgreSQL
# stand-in stores an unfinished version's finished_at as '' (a NOT NULL text, as SLS indexes it),
# so the same filter is `finished_at <> ''` here.
_FINISHED_VERSIONS = """tenant_id = %(tenant_id)s AND app_id = %(app_id)s
  AND triggered_from = %(triggered_from)s AND finished_at <> ''"""
# Dify bounds the range on write time, in epoch seconds.
_WRITTEN_IN_RANGE = "__time__ >= %(start_s)s AND __time__ < %(end_s)s"
# DATE(from_unixtime(__time__)): the UTC calendar day of the write time.
_WRITE_DAY = "CAST(to_timestamp(__time__) AT TIME ZONE 'UTC' AS date)"

_ACTUAL_AGGREGATES = {
    "daily_runs": "count(DISTINCT id) AS runs",
    "daily_terminals": "count(DISTINCT created_by) AS terminal_count",
    "daily_token_costs": "sum(total_tokens) AS token_count",
}
# The daily measures Dify itself answers (it has no statistic of runs by status per day, nor of
# durations): only these have a Dify actual.
ACTUAL_MEASURES = (*_ACTUAL_AGGREGATES, "daily_interactions")


def actual_daily(measure: str, params: dict[str, object]) -> Query:
    """Rows `(date, value)`: Dify's statement for one daily measure over [start_s, end_s).

    Average interactions are the mean, per write day, of each user's distinct finished runs."""
    if measure == "daily_interactions":
        sql = f"""
SELECT date, avg(interactions) AS interactions
FROM (
    SELECT {_WRITE_DAY} AS date, created_by, count(DISTINCT id) AS interactions
    FROM workflow_execution
    WHERE {_FINISHED_VERSIONS}
      AND {_WRITTEN_IN_RANGE}
    GROUP BY 1, 2
) AS per_user
GROUP BY date"""
        return Query(sql, params)
    sql = f"""
SELECT {_WRITE_DAY} AS date, {_ACTUAL_AGGREGATES[measure]}
FROM workflow_execution
WHERE {_FINISHED_VERSIONS}
  AND {_WRITTEN_IN_RANGE}
GROUP BY 1 ORDER BY 1"""
    return Query(sql, params)


def actual_status_counts(params: dict[str, object]) -> tuple[Query, Query]:
    """Dify's two statements for counts by status: rows `(status, count)` of the finished
    versions, and one row `(count)` of runs whose *running* versions' latest is kept by the
    window, which is every run that ever had a running version (the filter comes before the
    window), finished or not.

    Dify's repository accepts a time range for counts but does not apply it, and its client
    reads from epoch 0 to now when no time is given: both statements read the app's whole history
    whatever range was asked (hence no `__time__` condition here)."""
    finished = Query(
        f"""
SELECT status, count(DISTINCT id) AS count
FROM workflow_execution
WHERE {_FINISHED_VERSIONS}
GROUP BY status""",
        params,
    )
    running = Query(
        """
SELECT count(*) AS count
FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY log_version DESC) AS rn
    FROM workflow_execution
    WHERE tenant_id = %(tenant_id)s AND app_id = %(app_id)s
      AND triggered_from = %(triggered_from)s AND status = 'running'
) AS t
WHERE rn = 1""",
        params,
    )
    return finished, running


# --- Dify's LogStore reader of a run's node executions ----------------------------------------
# WorkflowRunService.get_workflow_run_node_executions first reads the run
# (LogstoreAPIWorkflowRunRepository.get_workflow_run_by_id: its latest version by ROW_NUMBER()),
# then LogstoreAPIWorkflowNodeExecutionRepository._get_run_executions (langgenius/dify, commit
# 09c156b3ee89850b156fb8abb95f0ba925de5d3f) reads the latest version of every execution of the run
# by ROW_NUMBER() over log_version only, in pages of 1,000 with OFFSET, until a page comes back
# short. The stand-in refuses OFFSET (SLS documents none), so the benchmark runs these on
# PostgreSQL directly.
DIFY_NODE_PAGE = 1_000


def node_run_lookup(params: dict[str, object]) -> Query:
    sql = """
SELECT * FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY log_version DESC) AS rn
    FROM workflow_execution
    WHERE id = %(run_id)s AND tenant_id = %(tenant_id)s AND app_id = %(app_id)s AND __time__ > 0
) AS subquery WHERE rn = 1
LIMIT 100"""
    return Query(sql, params)


def node_executions_page(params: dict[str, object], offset: int) -> Query:
    sql = f"""
SELECT * FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY id ORDER BY log_version DESC) AS rn
    FROM workflow_node_execution
    WHERE tenant_id = %(tenant_id)s AND app_id = %(app_id)s AND workflow_run_id = %(run_id)s
      AND (triggered_from IS NULL OR triggered_from != 'workflow-tool') AND __time__ > 0
) AS executions WHERE rn = 1 ORDER BY created_at, "index", id LIMIT {DIFY_NODE_PAGE} OFFSET {int(offset)}"""
    return Query(sql, params)
