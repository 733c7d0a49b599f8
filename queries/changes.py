"""Which settled days changed: the one statement that validates every kept day of a scope.

A settled day's aggregates are kept for good (app/core/settled.py) and validated instead of read
again: this statement names the local days (in `zone`) that hold a run written to since an
instant, among the runs created before `scope.end_us` (where live days begin). Only those days are
read again. Rows `(day)`, ascending, in keyset pages; usually none, since runs are written soon
after they are created and settled days are at least a day old.

- LogStore, shortcut plan: every version written at or after `written_since_s` (the last
  validation less STATS_TIME_SLACK) names its run's created day, which never changes (the
  writer's invariant 1). Only the last hour or so of versions is read, one parse each.
- LogStore, windowed plan: it assumes no invariant, so a version may move its run to another day
  and no statement over recent versions can name every day that changed; the service reads its
  settled days again instead (app/core/settled.py), and never asks this.
- Dify's `workflow_runs` (a row updated in place, no write time): a run finished since then, or
  not finished yet (it may change at any time), names its day.
"""

from __future__ import annotations

from queries.dialects import created_text_sql, epoch_us_sql
from queries.scope import LOGSTORE_TABLE, Query, RunScope, app_rows_where, created_range_where, keyset_page
from queries.timezones import local_day_sql, offset_segments
from queries.workflow_runs import CREATED_US, WORKFLOW_RUNS_TABLE, naive_utc, workflow_runs_where

DAY_PAGE = 1_000  # days per statement


def changed_days(scope: RunScope, zone: str, after_day: int | None = None) -> Query:
    """The local days of the runs created in the scope's range (end: where live days begin) that
    were written to at or after `scope.written_since_s`; a page after `after_day`."""
    assert scope.written_since_s is not None, "validation is of what was written since an instant"
    assert scope.plan != "windowed", "a windowed store's days are read again, not validated"
    day = local_day_sql("created_us", offset_segments(zone, *scope.created_span()))
    if scope.plan == "workflow_runs":
        where, params = workflow_runs_where(scope)
        params = {**params, "finished_since": naive_utc(scope.written_since_s * 1_000_000)}
        sql = f"""
SELECT DISTINCT {day} AS day
FROM (
    SELECT {CREATED_US} AS created_us
    FROM {WORKFLOW_RUNS_TABLE}
    WHERE {where} AND (finished_at IS NULL OR finished_at >= %(finished_since)s)
) AS changed"""
    else:
        params = scope.params()
        sql = f"""
SELECT DISTINCT {day} AS day
FROM (
    SELECT {epoch_us_sql(scope.dialect, created_text_sql())} AS created_us
    FROM {LOGSTORE_TABLE}
    WHERE {app_rows_where(scope)}
) AS changed
WHERE {created_range_where(scope)}"""
    after = (after_day,) if after_day is not None else None
    return keyset_page(sql, params, ("day",), after, DAY_PAGE)
