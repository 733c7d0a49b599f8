"""Daily runs, terminals, token costs and interactions: shortcut and windowed plans side by side.

Every query answers rows `(day_number, value...)`, ascending, one per local day that has runs
(`day_number` = days since 1970-01-01 in the requested zone; see queries/timezones.py).

Why the shortcuts are exact (writer invariants, SPEC 1):
- id, triggered_from, created_by, created_at and started_at never change between versions, so the
  runs created in a range, their day and their user can be read from *any* version: no
  latest-version step is needed for runs, terminals or interactions.
- Only a run's tokens can differ between its versions (duplicate finished versions carry
  different `total_tokens`), so token costs take the latest version's value with a per-id
  aggregate (`max_by` / ordered `array_agg`), a hash aggregation instead of a window sort.

The engines reward different shapes. SLS is columnar and counts distinct values over many rows
cheaply, so its shortcut parses every version and uses COUNT(DISTINCT). PostgreSQL is faster
when each run is collapsed first (GROUP BY id) and its created time parsed once per run.
"""

from __future__ import annotations

from queries.dialects import created_text_sql, epoch_us_sql, latest_value_sql, parse_once_fence
from queries.scope import TABLE, Query, RunScope, app_rows_where, created_range_where
from queries.timezones import local_day_sql, offset_segments
from queries.versions import latest_versions_sql


def _day_column(scope: RunScope, zone: str) -> str:
    return local_day_sql("created_us", offset_segments(zone, scope.start_us, scope.end_us))


def _per_run_daily(scope: RunScope, zone: str, aggregates: str, *, with_tokens: bool) -> Query:
    """Collapse versions to one row per run, parse its created time once, then group by day."""
    tokens = f", {latest_value_sql(scope.dialect, 'total_tokens')} AS total_tokens" if with_tokens else ""
    sql = f"""
SELECT {_day_column(scope, zone)} AS day, {aggregates}
FROM (
    SELECT created_by{", total_tokens" if with_tokens else ""},
           {epoch_us_sql(scope.dialect, "created_text")} AS created_us
    FROM (
        SELECT id, min(created_by) AS created_by, min({created_text_sql()}) AS created_text{tokens}
        FROM {TABLE}
        WHERE {app_rows_where(scope, with_trigger=True)}
        GROUP BY id
    ) AS per_run{parse_once_fence(scope.dialect)}
) AS runs
WHERE {created_range_where(scope)}
GROUP BY 1
ORDER BY 1"""
    return Query(sql, scope.params())


def _per_version_daily(scope: RunScope, zone: str, aggregates: str, group_by: str = "1") -> Query:
    """Parse every version and count distinct ids/users per day (SLS's columnar strength)."""
    sql = f"""
SELECT {_day_column(scope, zone)} AS day, {aggregates}
FROM (
    SELECT id, created_by, {epoch_us_sql(scope.dialect, created_text_sql())} AS created_us
    FROM {TABLE}
    WHERE {app_rows_where(scope, with_trigger=True)}
) AS versions
WHERE {created_range_where(scope)}
GROUP BY {group_by}
ORDER BY {group_by}"""
    return Query(sql, scope.params())


def _windowed_daily(scope: RunScope, zone: str, aggregates: str, group_by: str = "1") -> Query:
    """The general plan: keep each run's latest version, then filter and group that."""
    sql = f"""
SELECT {_day_column(scope, zone)} AS day, {aggregates}
FROM ({latest_versions_sql(scope, ("created_by", "total_tokens"))}
) AS latest
WHERE {created_range_where(scope)}
GROUP BY {group_by}
ORDER BY {group_by}"""
    return Query(sql, scope.params())


# --- daily runs: (day, runs) -------------------------------------------------------------------


def daily_runs_shortcut(scope: RunScope, zone: str) -> Query:
    if scope.dialect == "sls":
        return _per_version_daily(scope, zone, "count(DISTINCT id) AS runs")
    return _per_run_daily(scope, zone, "count(*) AS runs", with_tokens=False)


def daily_runs_windowed(scope: RunScope, zone: str) -> Query:
    return _windowed_daily(scope, zone, "count(*) AS runs")


# --- daily terminals: (day, distinct users) ----------------------------------------------------


def daily_terminals_shortcut(scope: RunScope, zone: str) -> Query:
    if scope.dialect == "sls":
        return _per_version_daily(scope, zone, "count(DISTINCT created_by) AS terminal_count")
    return _per_run_daily(scope, zone, "count(DISTINCT created_by) AS terminal_count", with_tokens=False)


def daily_terminals_windowed(scope: RunScope, zone: str) -> Query:
    return _windowed_daily(scope, zone, "count(DISTINCT created_by) AS terminal_count")


# --- daily token costs: (day, sum of latest tokens) --------------------------------------------


def daily_token_costs_shortcut(scope: RunScope, zone: str) -> Query:
    return _per_run_daily(scope, zone, "sum(total_tokens) AS token_count", with_tokens=True)


def daily_token_costs_windowed(scope: RunScope, zone: str) -> Query:
    return _windowed_daily(scope, zone, "sum(total_tokens) AS token_count")


# --- daily interactions: (day, runs, distinct users); the ratio is taken in Python -------------


def daily_interactions_shortcut(scope: RunScope, zone: str) -> Query:
    if scope.dialect == "sls":
        return _per_version_daily(
            scope, zone, "count(DISTINCT id) AS runs, count(DISTINCT created_by) AS users"
        )
    return _per_run_daily(
        scope, zone, "count(*) AS runs, count(DISTINCT created_by) AS users", with_tokens=False
    )


def daily_interactions_windowed(scope: RunScope, zone: str) -> Query:
    return _windowed_daily(scope, zone, "count(*) AS runs, count(DISTINCT created_by) AS users")


# --- users per day: (day, created_by), to unite the users of two sources on one day ------------


def day_users_shortcut(scope: RunScope, zone: str) -> Query:
    return _per_version_daily(scope, zone, "created_by", group_by="1, 2")


def day_users_windowed(scope: RunScope, zone: str) -> Query:
    return _windowed_daily(scope, zone, "created_by", group_by="1, 2")
