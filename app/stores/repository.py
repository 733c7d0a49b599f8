"""Dify's APIWorkflowRunRepository statistics over the configured sources: build, run, combine.

Each source builds its statements with queries/ in its own plan and dialect (app/stores/sources.py);
rows become answers through app/core/answers.py. Nothing here writes SQL. With one source every answer
is one statement (plus the cursor lookup of a run list page). With two (a migration) each source
answers the created times it owns and the answers are combined exactly:
- daily runs, tokens and runs by status add up per day; distinct users on the one day that holds
  the boundary are the *union* of both sides' users, and its duration percentiles rank the union
  of both sides' durations (each fetched for the days around the boundary only);
- counts add up per status (every run is in exactly one source);
- the run list reads the sources newest first: every LogStore run was created after every
  workflow_runs run, so concatenating the pages keeps the keyset order without gaps;
- run detail looks in the source that owns the run's created time;
- apps with runs add up per app (each source counts the runs it owns), the newest run is the
  newest of either side.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from functools import partial
from itertools import chain, pairwise
from typing import Any, TypeVar

import msgspec
import structlog

from app.config import Settings
from app.core import answers
from app.core.measures import STATUS_FIELDS, DailyMeasure, duration_tallies
from app.stores.backend import Backend
from app.stores.sources import Source, overlap
from queries import apps, changes, counts, daily, run_rows, runs
from queries.app_activity import APP_ACTIVITY_PAGE, ActivityScope, AppKey, app_activity
from queries.rows import (
    AppActivityRow,
    AppRow,
    ChangedDayRow,
    CursorRow,
    DailyRow,
    DayUserRow,
    DayValueRow,
    RunDetailRow,
    RunPageRow,
    RunStateRow,
    StatusCountRow,
)
from queries.runs import RunCursor
from queries.scope import Query, RunScope
from schemas.requests import CountRequest, DailyRequest, RunDetailRequest, RunListRequest
from schemas.runs import RunCounts, RunDetail, RunPageAnswer

log = structlog.get_logger("dify_stats.repository")
Row = TypeVar("Row")
T = TypeVar("T")
U = TypeVar("U")
# The day holding the boundary lies within a day (+ DST hour) of it; users are fetched this wide.
BOUNDARY_WINDOW_US = 2 * 86_400 * 1_000_000
# Run list pages on the LogStore try these created-time windows below the cursor (or now) first.
PAGE_WINDOWS_US = (86_400 * 1_000_000, 8 * 86_400 * 1_000_000)


class NotARun(ValueError):
    """A request named a run its app and trigger source do not have (a run list's cursor): bad
    input, answered as a 400 naming the parameter (app/http/errors.py)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class StatsRepository:
    def __init__(
        self, sources: Sequence[Source], settings: Settings, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.sources = tuple(sources)
        self.settings = settings
        self.wall_clock = wall_clock

    def _parts(
        self,
        tenant_id: str,
        app_id: str,
        triggered_from: str | None,
        start_us: int | None,
        end_us: int | None,
    ) -> list[tuple[Source, RunScope]]:
        """Each source with its scope of the range (sources owning none of it are left out)."""
        parts = []
        for source in self.sources:
            scope = source.scope(tenant_id, app_id, triggered_from, start_us, end_us, self.wall_clock())
            if scope is not None:
                parts.append((source, scope))
        return parts

    async def daily(self, measure: DailyMeasure, request: DailyRequest) -> list[Any]:
        """The measure's points, one per local day with runs."""
        return answers.daily_points(measure, await self.daily_rows(measure, request))

    async def daily_rows(self, measure: DailyMeasure, request: DailyRequest) -> list[DailyRow]:
        """The measure's rows, one per local day with runs, every source's combined."""
        if request.start_us is not None and request.start_us == request.end_us:
            return []
        parts = self._parts(
            request.tenant_id, request.app_id, request.triggered_from, request.start_us, request.end_us
        )
        zone, status = request.timezone, request.status
        measured = asyncio.gather(
            *(self._daily_rows(source, scope, zone, measure, status) for source, scope in parts)
        )
        if len(parts) == 1:
            return (await measured)[0]
        found, users, values = await asyncio.gather(
            measured,
            self._boundary_users(parts, zone, status) if measure.counts_users else _nothing(),
            self._boundary_values(parts, zone, measure, status) if measure.sql.ranks else _nothing(),
        )
        return combine_daily_rows(found, users, values)

    def keeps_runs(self, since_us: int, until_us: int | None) -> bool:
        """Whether one shortcut LogStore source answers all of [since_us, until_us): only then are
        its runs read one row each and kept (app/core/kept_runs.py)."""
        for source in self.sources:  # newest created times first
            if overlap(since_us, until_us, source.start_us, source.end_us) is not None:
                starts_before = source.start_us is None or source.start_us <= since_us
                ends_after = source.end_us is None or (until_us is not None and until_us <= source.end_us)
                return source.plan == "shortcut" and starts_before and ends_after
        return False

    async def run_rows(
        self,
        request: DailyRequest,
        since_us: int,
        until_us: int | None,
        written_since_s: int | None,
        written_until_s: int | None = None,
    ) -> list[RunStateRow]:
        """One row per run created in [since_us, until_us) with a version written at or after
        `written_since_s` (None: any version; the run's versions read are those up to
        `written_until_s`, when given), for a range `keeps_runs` accepted."""
        [(source, scope)] = self._parts(
            request.tenant_id, request.app_id, request.triggered_from, since_us, until_us
        )
        scope = msgspec.structs.replace(
            scope, written_since_s=written_since_s, written_until_s=written_until_s
        )
        return await read_pages(
            source.backend,
            partial(run_rows.run_rows, scope, request.timezone),
            RunStateRow,
            lambda row: row.id,
        )

    async def changed_days(
        self, request: DailyRequest, written_since_s: int, before_us: int
    ) -> frozenset[int] | None:
        """The local days (numbers) before `before_us` holding a run of the request's app and
        trigger source written to since `written_since_s` (queries/changes.py), every source's;
        None when a source cannot tell (the windowed plan): then every day may have changed."""
        parts = self._parts(request.tenant_id, request.app_id, request.triggered_from, None, before_us)
        if any(source.plan == "windowed" for source, _ in parts):
            return None
        found = await asyncio.gather(
            *(
                read_pages(
                    source.backend,
                    partial(
                        changes.changed_days,
                        msgspec.structs.replace(scope, written_since_s=written_since_s),
                        request.timezone,
                    ),
                    ChangedDayRow,
                    lambda row: row.day,
                )
                for source, scope in parts
            )
        )
        return frozenset(int(row.day) for rows in found for row in rows if row.day is not None)

    async def _daily_rows(
        self, source: Source, scope: RunScope, zone: str, measure: DailyMeasure, status: str | None
    ) -> list[DailyRow]:
        """The measure's rows of one source, every page; runs whose created time did not parse
        are reported (a warning naming one, and a metric), not counted. A long range read on the
        shortcut plan is read in parts by user at once (`user_parts`)."""
        scopes = user_parts(scope) if _splits(scope, measure, status) else [scope]
        found = await asyncio.gather(
            *(
                read_pages(
                    source.backend,
                    partial(daily.daily, part, zone, measure.sql, status=status),
                    DailyRow,
                    lambda row: row.day,
                )
                for part in scopes
            )
        )
        rows = [row for part_rows in found for row in part_rows]
        for row in rows:
            if row.day is None and int(row.unparsed_runs or 0):
                skipped = int(row.unparsed_runs)
                log.warning(
                    "runs_skipped_unparsable_created_time",
                    source=source.name,
                    runs=skipped,
                    example_run_id=row.unparsed_example,
                )
                if source.backend.metrics is not None:
                    source.backend.metrics.skipped_runs.labels(source=source.name).inc(skipped)
        return (
            combine_daily_rows(found, {}) if len(found) > 1 else [row for row in rows if row.day is not None]
        )

    async def _near_boundary(
        self,
        parts: list[tuple[Source, RunScope]],
        build: Callable[[RunScope, Any], Query],
        row_type: type[Row],
        key: Callable[[Row], Any],
    ) -> list[list[Row]]:
        """Each source's rows of the statement `build(scope, after)` over the days around its
        boundary (the day holding it lies within a day and a DST hour of it)."""

        def near_boundary(source: Source, scope: RunScope) -> RunScope:
            edge = source.start_us if source.start_us is not None else source.end_us
            assert edge is not None  # with two sources, each has a boundary
            window = overlap(
                scope.start_us, scope.end_us, edge - BOUNDARY_WINDOW_US, edge + BOUNDARY_WINDOW_US
            )
            low, high = window or (edge, edge)
            return msgspec.structs.replace(scope, start_us=low, end_us=high)

        return list(
            await asyncio.gather(
                *(
                    read_pages(source.backend, partial(build, near_boundary(source, scope)), row_type, key)
                    for source, scope in parts
                )
            )
        )

    async def _boundary_users(
        self, parts: list[tuple[Source, RunScope]], zone: str, status: str | None
    ) -> dict[int, set[str]]:
        """Users per day (of runs with `status`, if given), near each source's boundary, of the
        days more than one source has."""
        found = await self._near_boundary(
            parts,
            lambda scope, after: daily.day_users(scope, zone, after, status=status),
            DayUserRow,
            lambda row: (row.day, row.created_by),
        )
        return _shared_days([_users_by_day(rows) for rows in found], lambda sides: set().union(*sides))

    async def _boundary_values(
        self, parts: list[tuple[Source, RunScope]], zone: str, measure: DailyMeasure, status: str | None
    ) -> dict[int, list[int]]:
        """The measure's ranked values per day (ascending, repeated as often as runs have them; of
        runs with `status`, if given), near each source's boundary, of the days more than one
        source has values on."""
        found = await self._near_boundary(
            parts,
            lambda scope, after: daily.day_values(scope, zone, measure.sql, after, status=status),
            DayValueRow,
            lambda row: (row.day, row.value),
        )
        return _shared_days([_values_by_day(rows) for rows in found], lambda sides: sorted(chain(*sides)))

    async def counts(self, request: CountRequest) -> RunCounts:
        start_us, end_us = request.start_us, request.end_us
        if request.time_range_s is not None:
            start_us = int(self.wall_clock() * 1_000_000) - request.time_range_s * 1_000_000
        parts = self._parts(request.tenant_id, request.app_id, request.triggered_from, start_us, end_us)
        found = await asyncio.gather(
            *(
                read_pages(
                    source.backend,
                    partial(counts.status_counts, scope, request.status),
                    StatusCountRow,
                    lambda row: row.status,
                )
                for source, scope in parts
            )
        )
        answer = answers.run_counts(row for status_rows in found for row in status_rows)
        if request.status is None:
            return answer
        # Dify: with a status filter, `total` and that status' key are its count, the rest 0.
        total = answer.total
        key = request.status.replace("-", "_")
        values = {key: total} if key in RunCounts.__struct_fields__ else {}
        return RunCounts(total=total, **values)

    async def run_page(self, request: RunListRequest) -> RunPageAnswer:
        parts = self._parts(request.tenant_id, request.app_id, request.triggered_from, None, None)
        after = None
        if request.last_id is not None:
            after = await self._cursor(parts, request.last_id)
        wanted = request.limit + 1  # one more than shown tells whether there is a next page
        page: list[RunPageRow] = []
        for source, scope in parts:  # newest created times first
            if len(page) >= wanted:
                break
            if after is not None and source.start_us is not None and after.created_us < source.start_us:
                continue  # everything this source owns sorts before the cursor
            page += await self._newest_runs(source, scope, wanted - len(page), request.status, after)
        return RunPageAnswer(
            limit=request.limit,
            has_more=len(page) > request.limit,
            data=answers.run_summaries(page[: request.limit]),
        )

    async def _newest_runs(
        self, source: Source, scope: RunScope, limit: int, status: str | None, after: RunCursor | None
    ) -> list[RunPageRow]:
        """Up to `limit` runs of the source in list order, after the cursor.

        On the LogStore, a page without a created range scans the app's whole history. Runs
        created before a window's start sort after every run inside it, so when the runs created
        in a recent window (from a day before the cursor, or before now) fill the page, they are
        exactly the page; only a sparse app widens the window, then drops it."""
        if source.pages_by_window:
            top_us = after.created_us if after is not None else int(self.wall_clock() * 1_000_000)
            for window_us in PAGE_WINDOWS_US:
                window = overlap(scope.start_us, scope.end_us, top_us - window_us, None)
                if window is None or window[0] == scope.start_us:
                    break  # the window already covers the whole scope: no narrower query to try
                narrowed = msgspec.structs.replace(scope, start_us=window[0], end_us=window[1])
                found = await _run_page(source.backend, narrowed, limit, status, after)
                if len(found) >= limit:
                    return found
        return await _run_page(source.backend, scope, limit, status, after)

    async def _cursor(self, parts: list[tuple[Source, RunScope]], last_id: str) -> RunCursor:
        for source, scope in parts:
            found = await source.backend.fetch(runs.run_cursor(scope, last_id), CursorRow)
            if found:
                return RunCursor(created_us=int(found[0].created_us), id=last_id)
        raise NotARun("last_id", "is not a run of this app and trigger source")

    async def apps(self, since_epoch_s: int) -> list[tuple[str, str, int]]:
        """(tenant_id, app_id, runs) of the apps with runs since the instant, busiest first.

        By write time on the LogStore: a picker's ranking may count a dual-written older run twice."""
        found = await asyncio.gather(
            *(
                read_pages(
                    source.backend,
                    partial(apps.apps_with_runs, source.plan, since_epoch_s, source.end_us),
                    AppRow,
                    lambda row: (row.tenant_id, row.app_id),
                )
                for source in self.sources
            )
        )
        runs_by_app: dict[tuple[str, str], int] = {}
        for app_rows in found:
            for row in app_rows:
                key = (str(row.tenant_id), str(row.app_id))
                runs_by_app[key] = runs_by_app.get(key, 0) + int(row.runs)
        ranked = sorted(runs_by_app.items(), key=lambda item: (-item[1], item[0][1], item[0][0]))
        return [(tenant, app, count) for (tenant, app), count in ranked]

    async def app_activity(
        self, tenant_id: str | None, since_us: int, page_rows: int = APP_ACTIVITY_PAGE
    ) -> list[AppActivityRow]:
        """Per app of the tenant (None: every tenant), the runs created since the instant and the
        newest one's created time, over every source; ordered by (tenant_id, app_id)."""
        found = await asyncio.gather(
            *(self._app_activity(source, tenant_id, since_us, page_rows) for source in self.sources)
        )
        merged: dict[tuple[str, str], AppActivityRow] = {}
        for source_rows in found:
            for row in source_rows:
                key = (str(row.tenant_id), str(row.app_id))
                seen = merged.get(key)
                merged[key] = AppActivityRow(
                    tenant_id=key[0],
                    app_id=key[1],
                    runs=int(row.runs) + (seen.runs if seen else 0),
                    last_created_us=max(int(row.last_created_us), seen.last_created_us if seen else 0),
                )
        return [merged[key] for key in sorted(merged)]

    async def _app_activity(
        self, source: Source, tenant_id: str | None, since_us: int, page_rows: int
    ) -> list[AppActivityRow]:
        """The source's part of the created times, read in keyset pages until one comes back short."""
        owned = overlap(since_us, None, source.start_us, source.end_us)
        if owned is None:
            return []
        start_us, end_us = owned
        assert start_us is not None  # bounded by since_us
        scope = ActivityScope(
            tenant_id=tenant_id,
            start_us=start_us,
            end_us=end_us,
            time_slack_s=source.time_slack_s,
            dialect=source.backend.dialect,
            plan=source.plan,
        )
        found: list[AppActivityRow] = []
        after = None
        while True:
            page = await source.backend.fetch(app_activity(scope, after, page_rows), AppActivityRow)
            found += page
            if len(page) < page_rows:
                return found
            after = AppKey(tenant_id=str(page[-1].tenant_id), app_id=str(page[-1].app_id))

    async def run_detail(self, request: RunDetailRequest) -> RunDetail | None:
        for source, scope in self._parts(request.tenant_id, request.app_id, None, None, None):
            found = await source.backend.fetch(runs.run_detail(scope, request.run_id), RunDetailRow)
            if found:
                field_bytes = self.settings.sls_field_bytes if scope.dialect == "sls" else None
                detail = answers.run_detail(found[0], field_bytes)
                if detail.truncated_fields:
                    log.warning(
                        "run_fields_truncated",
                        run_id=detail.id,
                        fields=detail.truncated_fields,
                        source=source.name,
                    )
                return detail
        return None


# A range at least this long is read in READ_PARTS statements at once, each over the runs of a
# part of the users (their ids' first hex digit): every part scans the same writes, but groups and
# parses only its own runs, which is where a long range's time goes. Measured on 1 M runs, 90 days,
# 2 cores (bench/RESULTS.md, "First view"). Not for ranked measures (a percentile is not a sum of
# parts) nor for a status filter.
SPLIT_FROM_US = 7 * 86_400 * 1_000_000
READ_PARTS = 2
_USER_BOUNDS = {2: ("8",), 4: ("4", "8", "c")}


def _splits(scope: RunScope, measure: DailyMeasure, status: str | None) -> bool:
    long = scope.start_us is None or scope.end_us is None or scope.end_us - scope.start_us >= SPLIT_FROM_US
    return (
        READ_PARTS > 1 and long and scope.plan == "shortcut" and measure.sql.ranks is None and status is None
    )


def user_parts(scope: RunScope, parts: int = READ_PARTS) -> list[RunScope]:
    """The scope as `parts` scopes over disjoint sets of users (created_by ranges in text order,
    which every engine orders totally): a run's user never changes, so each run is in one part,
    and runs, users, tokens and statuses add up over the parts."""
    bounds: list[str | None] = [None, *_USER_BOUNDS[parts], None]
    return [msgspec.structs.replace(scope, users_from=low, users_to=high) for low, high in pairwise(bounds)]


async def _run_page(
    backend: Backend, scope: RunScope, limit: int, status: str | None, after: RunCursor | None
) -> list[RunPageRow]:
    """One page of runs: one statement, or on the shortcut plan two (the page's keys, then the
    latest version of those runs: queries/runs.py says why)."""
    page = runs.run_page(scope, limit, status, after)
    if scope.plan != "shortcut":
        return await backend.fetch(page, RunPageRow)
    keys = await backend.fetch(page, RunCursor)
    return await backend.fetch(runs.run_page_rows(scope, keys), RunPageRow) if keys else []


async def read_pages(
    backend: Backend, build: Callable[[Any], Query], row_type: type[Row], key: Callable[[Row], Any]
) -> list[Row]:
    """Every row of a statement read in keyset pages: `build(None)` is the first page's
    statement, `build(key(last row))` the next one's, until a page is not full. A row whose key
    is NULL sorts last (the daily statements' row of unparsable runs), so nothing follows it:
    paging on from it would start over at the first page."""
    rows: list[Row] = []
    after = None
    while True:
        query = build(after)
        page = await backend.fetch(query, row_type)
        rows += page
        if query.page_size is None or len(page) < query.page_size:
            return rows
        after = key(page[-1])
        if after is None:
            return rows


async def _nothing() -> dict[int, Any]:
    return {}


def _users_by_day(user_rows: Sequence[DayUserRow]) -> dict[int, set[str]]:
    users: dict[int, set[str]] = {}
    for row in user_rows:
        users.setdefault(int(row.day), set()).add(str(row.created_by))
    return users


def _values_by_day(value_rows: Sequence[DayValueRow]) -> dict[int, list[int]]:
    """Each day's values, one per run that has it."""
    values: dict[int, list[int]] = {}
    for row in value_rows:
        values.setdefault(int(row.day), []).extend([int(row.value)] * int(row.runs))
    return values


def _shared_days(per_source: Sequence[dict[int, T]], unite: Callable[[list[T]], U]) -> dict[int, U]:
    """Per day that more than one source has: `unite` of what each source has that day."""
    days = {day for one in per_source for day in one if sum(day in other for other in per_source) > 1}
    return {day: unite([one[day] for one in per_source if day in one]) for day in days}


# Per-day aggregates that add up across sources (every run is in exactly one source).
_SUMMED = ("runs", "users", "tokens", *STATUS_FIELDS.values(), "durations")
_RANKED = ("p50_us", "p95_us", "p99_us")


def _added(one: DailyRow, other: DailyRow) -> DailyRow:
    """Two rows of one day (two sources', or two parts of one source's runs): sums, the larger
    maximum, and percentiles when only one side has durations (with both, they are ranked over the
    union: combine_daily_rows' `values`); when the runs were last written only if both sides say."""
    sums: dict[str, Any] = {
        name: int(getattr(one, name) or 0) + int(getattr(other, name) or 0) for name in _SUMMED
    }
    maxima = [int(row.max_us) for row in (one, other) if row.max_us is not None]
    sides = [row for row in (one, other) if int(row.durations or 0)]
    ranked = {name: getattr(sides[0], name) if len(sides) == 1 else None for name in _RANKED}
    written = None
    if one.last_written is not None and other.last_written is not None:
        written = max(int(one.last_written), int(other.last_written))
    return DailyRow(
        day=one.day, **sums, **ranked, max_us=max(maxima) if maxima else None, last_written=written
    )


def combine_daily_rows(
    parts: Sequence[Sequence[DailyRow]],
    users: dict[int, set[str]],
    values: dict[int, list[int]] | None = None,
) -> list[DailyRow]:
    """Rows of several sources as one: values add up per day, except distinct users, which are the
    size of the union on the days given in `users`, and durations ranked over the union of the
    values given in `values` (ascending) on those days (the day holding the boundary)."""
    merged: dict[int, DailyRow] = {}
    for part in parts:
        for row in part:
            if row.day is None:
                continue
            day = int(row.day)
            seen = merged.get(day)
            merged[day] = row if seen is None else _added(seen, row)
    for day, who in users.items():
        if day in merged:
            merged[day] = msgspec.structs.replace(merged[day], users=len(who))
    for day, ordered in (values or {}).items():
        if day in merged:
            merged[day] = msgspec.structs.replace(merged[day], **duration_tallies(ordered))
    return [merged[day] for day in sorted(merged)]
