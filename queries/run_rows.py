"""One row per run, for the per-run state the service keeps of live days (app/core/kept_runs.py).

A refresh of live days must cost about the versions written since the last read, not the days:
so the service keeps each live run's created time, local day, user and latest-version key (which
carries the latest version's tokens, duration and status), and
merges into it the runs of the versions written since its last read (`written_since_s`, the
last read's wall clock minus STATS_TIME_SLACK). The merge is exact because the state of a run is
the maximum of its versions in one complete order (`dialects.latest_key_sql`): the maximum over
two reads is the maximum over their union, and a version read twice changes nothing.

Shortcut plan only: a run's created time, trigger source and user are taken from whichever of
its versions a read sees, which the writer's invariant 1 (they never change) makes exact.
"""

from __future__ import annotations

from queries.dialects import (
    created_text_sql,
    duration_key_sql,
    epoch_us_sql,
    latest_key_sql,
    parse_once_fence,
)
from queries.scope import LOGSTORE_TABLE, Query, RunScope, app_rows_where, created_range_where, keyset_page
from queries.timezones import local_day_sql, offset_segments

RUN_PAGE = 50_000  # runs per statement; a busy app's live days fit in one or two pages


def run_rows(scope: RunScope, zone: str, after_id: str | None = None) -> Query:
    """Runs created in the scope's range with a version written within its `__time__` bound
    (`written_since_s` for a refresh), a page of ids after `after_id`.

    Columns: id, day (local day number in `zone`), created_us, created_by, last_written (the
    largest `__time__` of its versions read), latest_key (the max of
    the run's versions read here in the truth's order: log_version, __time__, total_tokens, then
    the duration (dialects.duration_key_sql, characters 53-71) and the status (from 72 on); a
    finished version's duration is its own and its status is final, an unfinished one has no
    duration; so among versions tying on the first three, which are all finished or all not, this
    orders as the truth: by status, then duration)."""
    assert scope.plan == "shortcut", "a run's immutable fields are read from any of its versions"
    state = f"concat({duration_key_sql(scope.dialect)}, coalesce(status, ''))"
    day = local_day_sql("created_us", offset_segments(zone, *scope.created_span()))
    sql = f"""
SELECT id, {day} AS day, created_us, created_by, latest_key, last_written
FROM (
    SELECT id, created_by, latest_key, last_written,
           {epoch_us_sql(scope.dialect, "created_text")} AS created_us
    FROM (
        SELECT id, min(created_by) AS created_by, min({created_text_sql()}) AS created_text,
               max({latest_key_sql(state)}) AS latest_key, max(__time__) AS last_written
        FROM {LOGSTORE_TABLE}
        WHERE {app_rows_where(scope)}
        GROUP BY id
    ) AS per_run{parse_once_fence(scope.dialect)}
) AS runs
WHERE {created_range_where(scope)}"""
    after = (after_id,) if after_id is not None else None
    return keyset_page(sql, scope.params(), ("id",), after, RUN_PAGE)
