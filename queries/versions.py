"""The two ways of knowing a run's current state, as SQL fragments the measure modules wrap.

- `run_states_sql` (shortcut): one GROUP BY id over the versions, no window (its status
  aggregates also serve the daily measures' status filter, queries/daily.py). A run's status is
  the status of any finished version (finished statuses are final and agree:
  the writer's invariant 2, queries/README.md);
  a run with no finished version has the status of its latest unfinished version, `paused` or
  `running` (inv. 3), found with a plain `max` over a text that sorts as the truth's order of
  versions (dialects.latest_key_sql), so ties of log_version resolve as the truth does.
  Its duration is that of its latest finished version (the latest version, by invariant 2), found
  the same way.
- `latest_versions_sql` (windowed): ROW_NUMBER() over every version, keep the latest. Needs no
  invariant except that tenant and app never change; the fallback for any other writer.

Both yield `id`, `status` and `created_us` (created time as an integer µs epoch).
"""

from __future__ import annotations

from queries.dialects import (
    FINISHED,
    LATEST_KEY_PREFIX,
    Dialect,
    created_text_sql,
    duration_from_key_sql,
    duration_key_sql,
    duration_us_sql,
    epoch_us_sql,
    latest_key_sql,
    parse_once_fence,
)
from queries.scope import LATEST_FIRST, LOGSTORE_TABLE, RunScope, app_rows_where

# Within a GROUP BY id: the status of its finished versions, and its latest unfinished version.
RUN_STATUS_AGGREGATES = (
    f"max(CASE WHEN {FINISHED} THEN status END) AS finished_status, "
    f"max(CASE WHEN NOT ({FINISHED}) THEN {latest_key_sql('status')} END) AS latest_unfinished"
)
# Above that GROUP BY: the run's status.
RUN_STATUS = (
    "CASE WHEN finished_status IS NOT NULL THEN finished_status "
    f"WHEN substr(latest_unfinished, {LATEST_KEY_PREFIX + 1}) = 'paused' THEN 'paused' "
    "ELSE 'running' END"
)


def duration_aggregate_sql(dialect: Dialect) -> str:
    """Per id: the latest finished version's key carrying its duration (`finished_key`)."""
    return f"max(CASE WHEN {FINISHED} THEN {latest_key_sql(duration_key_sql(dialect))} END) AS finished_key"


DURATION = duration_from_key_sql("finished_key")  # one level up: the run's duration (µs) or NULL


def run_states_sql(scope: RunScope) -> str:
    return f"""
    SELECT id, {RUN_STATUS} AS status, {epoch_us_sql(scope.dialect, "created_text")} AS created_us
    FROM (
        SELECT id, min({created_text_sql()}) AS created_text, {RUN_STATUS_AGGREGATES}
        FROM {LOGSTORE_TABLE}
        WHERE {app_rows_where(scope)}
        GROUP BY id
    ) AS per_run{parse_once_fence(scope.dialect)}"""


def latest_first_sql(dialect: Dialect) -> str:
    """The truth's whole order of versions, for statements that answer a version's own columns
    (run detail, run list): LATEST_FIRST, then the longer duration, as retries tying on every
    other key (their elapsed times differ) are ordered."""
    return f"{LATEST_FIRST}, {duration_us_sql(dialect)} DESC NULLS LAST"


def latest_versions_sql(scope: RunScope, columns: tuple[str, ...]) -> str:
    """Latest version of every run of the app with this trigger source; `columns` plus created_us.

    `duration_us` (the version's duration, dialects.duration_us_sql) may be one of the columns;
    then it also completes the order among versions tying on every other key (retries)."""
    reads_duration = "duration_us" in columns
    raw = tuple(column for column in columns if column != "duration_us")
    wanted = ", ".join(dict.fromkeys(("id", *columns)))
    read = ("id", "triggered_from", "created_at", "started_at", *raw)
    inner = ", ".join(dict.fromkeys(read))
    versions = f"{LOGSTORE_TABLE}\n        WHERE {app_rows_where(scope, with_trigger=False)}"
    order = LATEST_FIRST
    if "elapsed_time" in columns:  # answered: retries must be told apart by their duration
        order = latest_first_sql(scope.dialect)
    if reads_duration:  # computed once per version, one level down
        every = ", ".join(dict.fromkeys((*read, "log_version", "__time__", "total_tokens", "status")))
        versions = f"""(
            SELECT {every}, {duration_us_sql(scope.dialect)} AS duration_us
            FROM {versions}
        ) AS timed"""
        inner += ", duration_us"
        order = f"{LATEST_FIRST}, duration_us DESC NULLS LAST"
    return f"""
    SELECT {wanted}, {epoch_us_sql(scope.dialect, created_text_sql())} AS created_us
    FROM (
        SELECT {inner},
               ROW_NUMBER() OVER (PARTITION BY id ORDER BY {order}) AS version_rank
        FROM {versions}
    ) AS versions
    WHERE version_rank = 1 AND triggered_from = %(triggered_from)s{parse_once_fence(scope.dialect)}"""
