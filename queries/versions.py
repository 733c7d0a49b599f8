"""The two ways of knowing a run's current state, as SQL fragments the measure modules wrap.

- `run_states_sql` (shortcut): one GROUP BY id over the versions, no window (its status
  aggregates also serve the daily measures' status filter, queries/daily.py). A run's status is
  the status of any finished version (finished statuses are final and agree:
  the writer's invariant 2, queries/README.md);
  a run with no finished version has the status of its latest unfinished version, `paused` or
  `running` (inv. 3), found with a plain `max` over a text that sorts as the truth's order of
  versions (dialects.latest_key_sql), so ties of log_version resolve as the truth does.
- `latest_versions_sql` (windowed): ROW_NUMBER() over every version, keep the latest. Needs no
  invariant except that tenant and app never change; the fallback for any other writer.

Both yield `id`, `status` and `created_us` (created time as an integer µs epoch).
"""

from __future__ import annotations

from queries.dialects import (
    LATEST_KEY_PREFIX,
    created_text_sql,
    epoch_us_sql,
    latest_key_sql,
    parse_once_fence,
)
from queries.scope import LATEST_FIRST, LOGSTORE_TABLE, RunScope, app_rows_where

_UNFINISHED = "coalesce(finished_at, '') = ''"  # SLS may send NULL or '' for an empty text
# Within a GROUP BY id: the status of its finished versions, and its latest unfinished version.
RUN_STATUS_AGGREGATES = (
    f"max(CASE WHEN NOT ({_UNFINISHED}) THEN status END) AS finished_status, "
    f"max(CASE WHEN {_UNFINISHED} THEN {latest_key_sql('status')} END) AS latest_unfinished"
)
# Above that GROUP BY: the run's status.
RUN_STATUS = (
    "CASE WHEN finished_status IS NOT NULL THEN finished_status "
    f"WHEN substr(latest_unfinished, {LATEST_KEY_PREFIX + 1}) = 'paused' THEN 'paused' "
    "ELSE 'running' END"
)


def run_states_sql(scope: RunScope) -> str:
    return f"""
    SELECT id, {RUN_STATUS} AS status, {epoch_us_sql(scope.dialect, "created_text")} AS created_us
    FROM (
        SELECT id, min({created_text_sql()}) AS created_text, {RUN_STATUS_AGGREGATES}
        FROM {LOGSTORE_TABLE}
        WHERE {app_rows_where(scope)}
        GROUP BY id
    ) AS per_run{parse_once_fence(scope.dialect)}"""


def latest_versions_sql(scope: RunScope, columns: tuple[str, ...]) -> str:
    """Latest version of every run of the app with this trigger source; `columns` plus created_us."""
    wanted = ", ".join(dict.fromkeys(("id", *columns)))
    inner = ", ".join(dict.fromkeys(("id", "triggered_from", "created_at", "started_at", *columns)))
    return f"""
    SELECT {wanted}, {epoch_us_sql(scope.dialect, created_text_sql())} AS created_us
    FROM (
        SELECT {inner},
               ROW_NUMBER() OVER (PARTITION BY id ORDER BY {LATEST_FIRST}) AS version_rank
        FROM {LOGSTORE_TABLE}
        WHERE {app_rows_where(scope, with_trigger=False)}
    ) AS versions
    WHERE version_rank = 1 AND triggered_from = %(triggered_from)s{parse_once_fence(scope.dialect)}"""
