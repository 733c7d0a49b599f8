"""Daily measures: rows `(day, runs | users | tokens ...)` per local day, ascending, one per day
that has runs (`day` = days since 1970-01-01 in the requested zone; see queries/timezones.py),
read in keyset pages of days (queries/scope.keyset_page).

A measure is its SQL aggregates (`DailyAggregates`, declared with the measure in app/measures.py);
this module wraps them in each plan's statement. The plans, side by side:

- shortcut, per run (`_per_run_daily`): collapse versions to one row per run with GROUP BY id,
  parse its created time once, then group by day. Exact without a latest-version step because
  id, triggered_from, created_by, created_at and started_at never change between versions; only
  tokens differ (retried finished versions), so they take the latest version's value with a
  per-id aggregate (the `max` of the latest-version key on SLS, an ordered `array_agg` on
  PostgreSQL), a hash aggregation instead of a window sort.
- shortcut, per version (`_per_version_daily`): parse every version and count distinct ids and
  users per day. SLS is columnar and does this fast; PostgreSQL is faster per run. Used on SLS for
  every measure that can be counted over versions (`over_versions`), i.e. not tokens.
- windowed (`_windowed_daily`): the latest version of every run by ROW_NUMBER(), then group. Needs
  no writer invariant.
- workflow_runs (`_workflow_runs_daily`): Dify's own table, whose row is the run.
"""

from __future__ import annotations

import msgspec

from queries.dialects import created_text_sql, epoch_us_sql, latest_value_sql, parse_once_fence
from queries.scope import LOGSTORE_TABLE, Query, RunScope, app_rows_where, created_range_where, keyset_page
from queries.timezones import local_day_sql, offset_segments
from queries.versions import latest_versions_sql
from queries.workflow_runs import CREATED_US, WORKFLOW_RUNS_TABLE, workflow_runs_where


class DailyAggregates(msgspec.Struct, frozen=True):
    """The SQL aggregates of one daily measure, named `runs`, `users` or `tokens`.

    `over_runs` runs over one row per run (columns created_by, total_tokens): the shortcut on
    PostgreSQL, the windowed plan and Dify's table. `over_versions` runs over every version
    (columns id, created_by) and is the SLS shortcut; None when the measure needs each run's
    latest version (tokens)."""

    over_runs: str
    over_versions: str | None = None
    reads_tokens: bool = False


# Runs whose created time does not parse (dialects.epoch_us_sql gives NULL) are in no day: the
# daily statements keep them as one row whose `day` is NULL (sorted last), counting them and naming
# one, so that the app can report them instead of skipping them silently.
# Over one row per run a plain count; over versions a distinct count of ids.
UNPARSED_RUNS = (
    "count(CASE WHEN created_us IS NULL THEN 1 END) AS unparsed_runs, "
    "min(CASE WHEN created_us IS NULL THEN id END) AS unparsed_example"
)
UNPARSED_VERSIONS = (
    "count(DISTINCT CASE WHEN created_us IS NULL THEN id END) AS unparsed_runs, "
    "min(CASE WHEN created_us IS NULL THEN id END) AS unparsed_example"
)

DAY_PAGE = 1_000  # days per statement: a range of up to STATS_MAX_RANGE_DAYS is one page
USER_PAGE = 10_000  # (day, user) rows per statement


def daily(
    scope: RunScope,
    zone: str,
    aggregates: DailyAggregates,
    after_day: int | None = None,
    page: int = DAY_PAGE,
) -> Query:
    """One daily measure over the scope, in the scope's plan: a page of days after `after_day`."""
    if scope.plan == "workflow_runs":  # created_at is a timestamp there: it always parses
        query = _workflow_runs_daily(scope, zone, aggregates.over_runs)
    elif scope.plan == "windowed":
        query = _windowed_daily(scope, zone, f"{aggregates.over_runs}, {UNPARSED_RUNS}", keep_unparsed=True)
    elif scope.dialect == "sls" and aggregates.over_versions is not None:
        query = _per_version_daily(
            scope, zone, f"{aggregates.over_versions}, {UNPARSED_VERSIONS}", keep_unparsed=True
        )
    else:
        query = _per_run_daily(
            scope, zone, f"{aggregates.over_runs}, {UNPARSED_RUNS}", with_tokens=aggregates.reads_tokens
        )
    after = (after_day,) if after_day is not None else None
    return keyset_page(query.sql, query.params, ("day",), after, page)


def day_users(scope: RunScope, zone: str, after: tuple[int, str] | None = None) -> Query:
    """Rows `(day, created_by)` of every user with runs in the scope, to unite the users of two
    sources on the day holding the boundary between them; a page after the row `after`."""
    users = "created_by"
    if scope.plan == "workflow_runs":
        query = _workflow_runs_daily(scope, zone, users, group_by="1, 2")
    elif scope.plan == "windowed":
        query = _windowed_daily(scope, zone, users, group_by="1, 2")
    else:
        query = _per_version_daily(scope, zone, users, group_by="1, 2")
    return keyset_page(query.sql, query.params, ("day", "created_by"), after, USER_PAGE)


def _day_column(scope: RunScope, zone: str) -> str:
    return local_day_sql("created_us", offset_segments(zone, scope.start_us, scope.end_us))


def _per_run_daily(scope: RunScope, zone: str, aggregates: str, *, with_tokens: bool) -> Query:
    """Collapse versions to one row per run, parse its created time once, then group by day."""
    tokens = f", {latest_value_sql(scope.dialect, 'total_tokens')} AS total_tokens" if with_tokens else ""
    sql = f"""
SELECT {_day_column(scope, zone)} AS day, {aggregates}
FROM (
    SELECT id, created_by{", total_tokens" if with_tokens else ""},
           {epoch_us_sql(scope.dialect, "created_text")} AS created_us
    FROM (
        SELECT id, min(created_by) AS created_by, min({created_text_sql()}) AS created_text{tokens}
        FROM {LOGSTORE_TABLE}
        WHERE {app_rows_where(scope)}
        GROUP BY id
    ) AS per_run{parse_once_fence(scope.dialect)}
) AS runs
WHERE {_in_range(scope, keep_unparsed=True)}
GROUP BY 1"""
    return Query(sql, scope.params())


def _in_range(scope: RunScope, *, keep_unparsed: bool) -> str:
    if keep_unparsed:
        return f"(created_us IS NULL OR ({created_range_where(scope)}))"
    return created_range_where(scope)


def _per_version_daily(
    scope: RunScope, zone: str, aggregates: str, keep_unparsed: bool = False, group_by: str = "1"
) -> Query:
    """Parse every version and count distinct ids/users per day (SLS's columnar strength)."""
    sql = f"""
SELECT {_day_column(scope, zone)} AS day, {aggregates}
FROM (
    SELECT id, created_by, {epoch_us_sql(scope.dialect, created_text_sql())} AS created_us
    FROM {LOGSTORE_TABLE}
    WHERE {app_rows_where(scope)}
) AS versions
WHERE {_in_range(scope, keep_unparsed=keep_unparsed)}
GROUP BY {group_by}"""
    return Query(sql, scope.params())


def _windowed_daily(
    scope: RunScope, zone: str, aggregates: str, keep_unparsed: bool = False, group_by: str = "1"
) -> Query:
    """The general plan: keep each run's latest version, then filter and group that."""
    sql = f"""
SELECT {_day_column(scope, zone)} AS day, {aggregates}
FROM ({latest_versions_sql(scope, ("created_by", "total_tokens"))}
) AS latest
WHERE {_in_range(scope, keep_unparsed=keep_unparsed)}
GROUP BY {group_by}"""
    return Query(sql, scope.params())


def _workflow_runs_daily(scope: RunScope, zone: str, aggregates: str, group_by: str = "1") -> Query:
    """Dify's table: each row is a run; created_by is a uuid there, compared and output as text."""
    where, params = workflow_runs_where(scope)
    sql = f"""
SELECT {_day_column(scope, zone)} AS day, {aggregates}
FROM (
    SELECT CAST(created_by AS text) AS created_by, total_tokens, {CREATED_US} AS created_us
    FROM {WORKFLOW_RUNS_TABLE}
    WHERE {where}
) AS runs
GROUP BY {group_by}"""
    return Query(sql, params)
