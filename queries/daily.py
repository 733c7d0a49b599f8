"""Daily measures: rows `(day, runs | users | tokens ...)` per local day, ascending, one per day
that has runs (`day` = days since 1970-01-01 in the requested zone; see queries/timezones.py),
read in keyset pages of days (queries/scope.keyset_page).

A measure is its SQL aggregates (`DailyAggregates`, declared with the measure in app/core/measures.py);
this module wraps them in each plan's statement. Every plan but one first yields one row per run
(`id`, `created_by`, `created_us`, and the per-run columns the measure reads, `RUN_COLUMNS`), which
is then grouped by local day. The plans, side by side:

Each day's row also says when its runs were last written (`last_written`, the largest `__time__`
of their versions; shortcut plans only): a settled day's later reads need not look past it
(app/core/settled.py).

- shortcut, per run (`_per_run`): collapse versions to one row per run with GROUP BY id, parse
  its created time once, then group by day. Exact without a latest-version step because id,
  triggered_from, created_by, created_at and started_at never change between versions; what
  does change is taken per id with plain aggregates, a hash aggregation instead of a window sort:
  tokens of the latest version (retried finished versions differ; the `max` of the latest-version
  key on SLS, an ordered `array_agg` on PostgreSQL), the status (of any finished version, else of
  the latest unfinished one) and the duration of the latest finished version (queries/versions.py).
- shortcut, per version (`_per_version_daily`): parse every version and count distinct ids and
  users per day. SLS is columnar and does this fast; PostgreSQL is faster per run. Used on SLS for
  every measure that can be counted over versions (`over_versions`): not tokens, status, duration.
- windowed (`latest_versions_sql`): the latest version of every run by ROW_NUMBER(). Needs no
  writer invariant.
- workflow_runs (`_workflow_runs`): Dify's own table, whose row is the run.

A measure with percentiles ranks one per-run column within each day (`DailyAggregates.ranks`):
`ROW_NUMBER()` and `count() OVER` per day give each run's position and the day's count, and the
aggregates pick the value at a position (`nearest_rank_sql`), exactly, in every dialect.
"""

from __future__ import annotations

import msgspec

from queries.dialects import created_text_sql, epoch_us_sql, latest_value_sql, parse_once_fence
from queries.scope import LOGSTORE_TABLE, Query, RunScope, app_rows_where, created_range_where, keyset_page
from queries.timezones import local_day_sql, offset_segments
from queries.versions import (
    DURATION,
    RUN_STATUS,
    RUN_STATUS_AGGREGATES,
    duration_aggregate_sql,
    latest_versions_sql,
)
from queries.workflow_runs import CREATED_US, WORKFLOW_RUNS_TABLE, duration_us_column, workflow_runs_where

# What a measure may read of each run besides id, created_by and created_us, all of its latest
# version: total_tokens, status, and duration_us (µs; NULL while unfinished, dialects.duration_us_sql).
RUN_COLUMNS = ("total_tokens", "status", "duration_us")


class DailyAggregates(msgspec.Struct, frozen=True):
    """The SQL aggregates of one daily measure, named after what they count (queries/rows.DailyRow).

    `over_runs` runs over one row per run (columns id, created_by, created_us and `reads`): the
    shortcut on PostgreSQL, the windowed plan and Dify's table. `over_versions` runs over every
    version (columns id, created_by) and is the SLS shortcut; None when the measure needs each
    run's latest version. `ranks`: a column of `reads` ranked within each day, for exact
    percentiles: each run then also has `rank_in_day` (1.., ascending, NULLs last) and
    `ranked_in_day` (the day's non-NULL values)."""

    over_runs: str
    over_versions: str | None = None
    reads: tuple[str, ...] = ()
    ranks: str | None = None

    def __post_init__(self) -> None:
        assert all(column in RUN_COLUMNS for column in self.reads), self.reads
        assert self.ranks is None or self.ranks in self.reads, self.ranks


def nearest_rank_sql(column: str, percent: int) -> str:
    """Aggregate: the day's value of `column` at position ceil(percent/100 * n) of its n ascending
    values (nearest rank), in integer arithmetic; NULL on a day without values."""
    return f"max(CASE WHEN rank_in_day = ({int(percent)} * ranked_in_day + 99) / 100 THEN {column} END)"


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
VALUE_PAGE = 10_000  # (day, value) rows per statement


def daily(
    scope: RunScope,
    zone: str,
    aggregates: DailyAggregates,
    after_day: int | None = None,
    page: int = DAY_PAGE,
    *,
    status: str | None = None,
) -> Query:
    """One daily measure over the scope, in the scope's plan: a page of days after `after_day`;
    with `status`, of the runs whose latest status it is."""
    per_version = scope.plan != "workflow_runs" and scope.dialect == "sls" and status is None
    if per_version and aggregates.over_versions is not None:
        query = _per_version_daily(
            scope,
            zone,
            f"{aggregates.over_versions}, {UNPARSED_VERSIONS}, max(__time__) AS last_written",
            keep_unparsed=True,
        )
    else:
        # Dify's table holds created_at as a timestamp: it always parses.
        unparsed = "" if scope.plan == "workflow_runs" else f", {UNPARSED_RUNS}"
        written = ", max(last_written) AS last_written" if scope.plan == "shortcut" else ""
        query = _by_day(
            scope,
            zone,
            aggregates.reads,
            f"{aggregates.over_runs}{unparsed}{written}",
            keep_unparsed=True,
            ranks=aggregates.ranks,
            status=status,
        )
    after = (after_day,) if after_day is not None else None
    return keyset_page(query.sql, query.params, ("day",), after, page)


def day_users(
    scope: RunScope, zone: str, after: tuple[int, str] | None = None, *, status: str | None = None
) -> Query:
    """Rows `(day, created_by)` of every user with runs in the scope (with `status`: runs whose
    latest status it is), to unite the users of two sources on the day holding the boundary
    between them; a page after the row `after`."""
    users = "created_by"
    if scope.plan == "shortcut" and status is None:
        query = _per_version_daily(scope, zone, users, group_by="1, 2")
    else:
        query = _by_day(scope, zone, (), users, group_by="1, 2", status=status)
    return keyset_page(query.sql, query.params, ("day", "created_by"), after, USER_PAGE)


def day_values(
    scope: RunScope,
    zone: str,
    aggregates: DailyAggregates,
    after: tuple[int, int] | None = None,
    *,
    status: str | None = None,
) -> Query:
    """Rows `(day, value, runs)`: each distinct non-NULL value of the measure's ranked column per
    day and how many runs have it (with `status`: of the runs whose latest status it is), to rank
    the union of two sources' values on the day holding the boundary between them; a page after
    the row `after`."""
    column = aggregates.ranks
    assert column is not None, "only a measure that ranks a column has values to unite"
    query = _by_day(
        scope,
        zone,
        aggregates.reads,
        f"{column} AS value, count(*) AS runs",
        group_by="1, 2",
        only=f"{column} IS NOT NULL",
        status=status,
    )
    return keyset_page(query.sql, query.params, ("day", "value"), after, VALUE_PAGE)


def _day_column(scope: RunScope, zone: str) -> str:
    return local_day_sql("created_us", offset_segments(zone, *scope.created_span()))


def _by_day(
    scope: RunScope,
    zone: str,
    reads: tuple[str, ...],
    aggregates: str,
    *,
    keep_unparsed: bool = False,
    group_by: str = "1",
    ranks: str | None = None,
    only: str | None = None,
    status: str | None = None,
) -> Query:
    """`aggregates` per local day over one row per run of the scope (in its plan), the runs
    filtered by the created range and `status` (`keep_unparsed`: and, to be reported, those
    whose created time does not parse, whatever their status) and by `only`; with `ranks`, each
    run carries its rank in its day first."""
    if status is not None:
        reads = tuple(dict.fromkeys((*reads, "status")))
    runs, params = _runs(scope, reads)
    where = created_range_where(scope) if scope.plan != "workflow_runs" else "1 = 1"
    if status is not None:
        where += " AND status = %(status)s"
        params = {**params, "status": status}
    if keep_unparsed and scope.plan != "workflow_runs":
        where = f"(created_us IS NULL OR ({where}))"
    if only is not None:
        where = f"{where} AND {only}"
    if ranks is None:
        sql = f"""
SELECT {_day_column(scope, zone)} AS day, {aggregates}
FROM ({runs}
) AS runs
WHERE {where}
GROUP BY {group_by}"""
        return Query(sql, params)
    written = ("last_written",) if scope.plan == "shortcut" else ()
    columns = ", ".join(dict.fromkeys(("id", "created_by", "created_us", *written, *reads)))
    sql = f"""
SELECT day, {aggregates}
FROM (
    SELECT day, {columns},
           ROW_NUMBER() OVER (PARTITION BY day ORDER BY {ranks} ASC NULLS LAST) AS rank_in_day,
           count({ranks}) OVER (PARTITION BY day) AS ranked_in_day
    FROM (
        SELECT {_day_column(scope, zone)} AS day, {columns}
        FROM ({runs}
        ) AS runs
        WHERE {where}
    ) AS days
) AS ranked
GROUP BY day"""
    return Query(sql, params)


def _runs(scope: RunScope, reads: tuple[str, ...]) -> tuple[str, dict[str, object]]:
    """One row per run of the scope's app and trigger source (created in any range on the
    LogStore; within the scope's range on Dify's table): id, created_by, created_us, `reads`."""
    if scope.plan == "workflow_runs":
        return _workflow_runs(scope, reads)
    if scope.plan == "windowed":
        return latest_versions_sql(scope, ("created_by", "total_tokens", *reads)), scope.params()
    return _per_run(scope, reads), scope.params()


def _per_run(scope: RunScope, reads: tuple[str, ...]) -> str:
    """Collapse versions to one row per run, parse its created time once (the shortcut)."""
    per_id = {  # aggregate within GROUP BY id, then the column one level up
        "total_tokens": (
            f"{latest_value_sql(scope.dialect, 'total_tokens')} AS total_tokens",
            "total_tokens",
        ),
        "status": (RUN_STATUS_AGGREGATES, f"{RUN_STATUS} AS status"),
        "duration_us": (duration_aggregate_sql(scope.dialect), f"{DURATION} AS duration_us"),
    }
    aggregates = "".join(f", {per_id[column][0]}" for column in reads)
    columns = "".join(f", {per_id[column][1]}" for column in reads)
    return f"""
    SELECT id, created_by{columns}, last_written,
           {epoch_us_sql(scope.dialect, "created_text")} AS created_us
    FROM (
        SELECT id, min(created_by) AS created_by, min({created_text_sql()}) AS created_text,
               max(__time__) AS last_written{aggregates}
        FROM {LOGSTORE_TABLE}
        WHERE {app_rows_where(scope)}
        GROUP BY id
    ) AS per_run{parse_once_fence(scope.dialect)}"""


def _per_version_daily(
    scope: RunScope, zone: str, aggregates: str, keep_unparsed: bool = False, group_by: str = "1"
) -> Query:
    """Parse every version and count distinct ids/users per day (SLS's columnar strength)."""
    where = created_range_where(scope)
    if keep_unparsed:
        where = f"(created_us IS NULL OR ({where}))"
    sql = f"""
SELECT {_day_column(scope, zone)} AS day, {aggregates}
FROM (
    SELECT id, created_by, __time__, {epoch_us_sql(scope.dialect, created_text_sql())} AS created_us
    FROM {LOGSTORE_TABLE}
    WHERE {app_rows_where(scope)}
) AS versions
WHERE {where}
GROUP BY {group_by}"""
    return Query(sql, scope.params())


def _workflow_runs(scope: RunScope, reads: tuple[str, ...]) -> tuple[str, dict[str, object]]:
    """Dify's table: each row is a run; ids and created_by are uuids there, output as text."""
    where, params = workflow_runs_where(scope)
    column_sql = {"total_tokens": "total_tokens", "status": "status", "duration_us": duration_us_column()}
    columns = "".join(
        f", {column_sql[column]} AS {column}" for column in dict.fromkeys(("total_tokens", *reads))
    )
    sql = f"""
    SELECT CAST(id AS text) AS id, CAST(created_by AS text) AS created_by{columns}, {CREATED_US} AS created_us
    FROM {WORKFLOW_RUNS_TABLE}
    WHERE {where}"""
    return sql, params
