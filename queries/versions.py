"""The two ways of knowing a run's current state, as SQL fragments the measure modules wrap.

- `run_states_sql` (shortcut): one GROUP BY id over the versions, no window. A run's status is
  the status of any finished version (finished statuses are final and agree:
  the writer's invariant 2, queries/README.md);
  a run with no finished version is `paused` if its latest unfinished version is a pause,
  else `running` (inv. 3: unfinished versions are running or paused).
- `latest_versions_sql` (windowed): ROW_NUMBER() over every version, keep the latest. Needs no
  invariant except that tenant and app never change; the fallback for any other writer.

Both yield `id`, `status` and `created_us` (created time as an integer µs epoch).
"""

from __future__ import annotations

from queries.dialects import created_text_sql, epoch_us_sql, parse_once_fence
from queries.scope import LATEST_FIRST, LOGSTORE_TABLE, RunScope, app_rows_where


def run_states_sql(scope: RunScope) -> str:
    return f"""
    SELECT id,
           CASE WHEN finished_status IS NOT NULL THEN finished_status
                WHEN coalesce(last_paused, -1) > coalesce(last_running, -1) THEN 'paused'
                ELSE 'running' END AS status,
           {epoch_us_sql(scope.dialect, "created_text")} AS created_us
    FROM (
        SELECT id,
               min({created_text_sql()}) AS created_text,
               max(CASE WHEN finished_at <> '' THEN status END) AS finished_status,
               max(CASE WHEN finished_at = '' AND status = 'paused' THEN log_version END) AS last_paused,
               max(CASE WHEN finished_at = '' AND status <> 'paused' THEN log_version END) AS last_running
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
