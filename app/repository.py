"""Dify's APIWorkflowRunRepository statistics over the configured sources: plan, run, combine.

Queries come from queries/ through each source's planner; rows become answer structs through
queries/rows.py. Nothing here writes SQL. With one source every answer is one query (plus the
cursor lookup of a run list page). With two (a migration, app/sources.py) each source answers
the created times it owns and the answers are combined exactly:
- daily runs and tokens add up per day; distinct users on the one day that holds the boundary
  are the *union* of both sides' users (fetched for the days around the boundary only);
- counts add up per status (every run is in exactly one source);
- the run list reads the sources newest first: every LogStore run was created after every
  workflow_runs run, so concatenating the pages keeps the keyset order without gaps;
- run detail looks in the source that owns the run's created time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from app.config import Settings
from app.params import BadParameter
from app.sources import Source, overlap
from queries import rows
from queries.runs import RunPage
from queries.scope import RunScope
from schemas.requests import CountRequest, DailyMeasure, DailyRequest, RunDetailRequest, RunListRequest
from schemas.runs import RunCounts, RunDetail, RunPageAnswer

Row = Sequence[Any]
Converter = Callable[[Sequence[Row]], Sequence[msgspec.Struct]]
DAILY_CONVERTERS: dict[str, Converter] = {
    "daily_runs": rows.daily_runs,
    "daily_terminals": rows.daily_terminals,
    "daily_token_costs": rows.daily_token_costs,
    "daily_interactions": rows.daily_interactions,
}
# Which value of a measure's row is the day's distinct users (to be united across sources).
USERS_COLUMN = {"daily_terminals": 0, "daily_interactions": 1}
# The day holding the boundary lies within a day (+ DST hour) of it; users are fetched this wide.
BOUNDARY_WINDOW_US = 2 * 86_400 * 1_000_000
# Run list pages on the LogStore try these created-time windows below the cursor (or now) first.
PAGE_WINDOWS_US = (86_400 * 1_000_000, 8 * 86_400 * 1_000_000)


class StatsRepository:
    def __init__(
        self, sources: Sequence[Source], settings: Settings, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.sources = tuple(sources)
        self.settings = settings
        self.wall_clock = wall_clock

    def _parts(
        self, tenant_id: str, app_id: str, triggered_from: str, start_us: int | None, end_us: int | None
    ) -> list[tuple[Source, RunScope]]:
        """Each source with the part of the range it owns (sources owning none are left out)."""
        parts = []
        for source in self.sources:
            owned = source.clip(start_us, end_us)
            if owned is not None:
                scope = RunScope(
                    tenant_id=tenant_id,
                    app_id=app_id,
                    triggered_from=triggered_from,
                    start_us=owned[0],
                    end_us=owned[1],
                    time_slack_s=self.settings.time_slack,
                    dialect=source.backend.dialect,
                )
                parts.append((source, scope))
        return parts

    async def daily(self, measure: DailyMeasure, request: DailyRequest) -> Sequence[msgspec.Struct]:
        if request.start_us is not None and request.start_us == request.end_us:
            return []
        parts = self._parts(
            request.tenant_id, request.app_id, request.triggered_from, request.start_us, request.end_us
        )
        zone = request.timezone
        measured = asyncio.gather(
            *(source.backend.fetch(getattr(source.queries, measure)(scope, zone)) for source, scope in parts)
        )
        if len(parts) == 1:
            return DAILY_CONVERTERS[measure]((await measured)[0])
        if measure not in USERS_COLUMN:
            return DAILY_CONVERTERS[measure](combine_daily_rows(await measured, {}, None))
        found, users = await asyncio.gather(measured, self._boundary_users(parts, zone))
        return DAILY_CONVERTERS[measure](combine_daily_rows(found, users, USERS_COLUMN[measure]))

    async def _boundary_users(self, parts: list[tuple[Source, RunScope]], zone: str) -> dict[int, set[str]]:
        """Users per day, near each source's boundary, of the days more than one source has."""

        def near_boundary(source: Source, scope: RunScope) -> RunScope:
            edge = source.start_us if source.start_us is not None else source.end_us
            assert edge is not None  # with two sources, each has a boundary
            window = overlap(
                scope.start_us, scope.end_us, edge - BOUNDARY_WINDOW_US, edge + BOUNDARY_WINDOW_US
            )
            low, high = window or (edge, edge)
            return msgspec.structs.replace(scope, start_us=low, end_us=high)

        found = await asyncio.gather(
            *(
                source.backend.fetch(source.queries.day_users(near_boundary(source, scope), zone))
                for source, scope in parts
            )
        )
        per_source = [_users_by_day(user_rows) for user_rows in found]
        shared_days = {day for users in per_source for day in users if sum(day in u for u in per_source) > 1}
        return {day: set().union(*(users.get(day, set()) for users in per_source)) for day in shared_days}

    async def counts(self, request: CountRequest) -> RunCounts:
        start_us, end_us = request.start_us, request.end_us
        if request.time_range_s is not None:
            start_us = int(self.wall_clock() * 1_000_000) - request.time_range_s * 1_000_000
        parts = self._parts(request.tenant_id, request.app_id, request.triggered_from, start_us, end_us)
        found = await asyncio.gather(
            *(
                source.backend.fetch(source.queries.status_counts(scope, request.status))
                for source, scope in parts
            )
        )
        answer = rows.run_counts([row for status_rows in found for row in status_rows])
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
        page: list[Row] = []
        for source, scope in parts:  # newest created times first
            if len(page) >= wanted:
                break
            if after is not None and source.start_us is not None and after.after_created_us < source.start_us:
                continue  # everything this source owns sorts before the cursor
            page += await self._newest_runs(source, scope, wanted - len(page), request.status, after)
        return RunPageAnswer(
            limit=request.limit,
            has_more=len(page) > request.limit,
            data=[rows.run_summary(row) for row in page[: request.limit]],
        )

    async def _newest_runs(
        self, source: Source, scope: RunScope, limit: int, status: str | None, after: RunPage | None
    ) -> Sequence[Row]:
        """Up to `limit` runs of the source in list order, after the cursor.

        On the LogStore, a page without a created range scans the app's whole history. Runs
        created before a window's start sort after every run inside it, so when the runs created
        in a recent window (from a day before the cursor, or before now) fill the page, they are
        exactly the page; only a sparse app widens the window, then drops it."""
        if source.pages_by_window:
            top_us = after.after_created_us if after is not None else int(self.wall_clock() * 1_000_000)
            for window_us in PAGE_WINDOWS_US:
                window = overlap(scope.start_us, scope.end_us, top_us - window_us, None)
                if window is None or window[0] == scope.start_us:
                    break  # the window already covers the whole scope: no narrower query to try
                narrowed = msgspec.structs.replace(scope, start_us=window[0], end_us=window[1])
                found = await source.backend.fetch(source.queries.run_page(narrowed, limit, status, after))
                if len(found) >= limit:
                    return found
        return await source.backend.fetch(source.queries.run_page(scope, limit, status, after))

    async def _cursor(self, parts: list[tuple[Source, RunScope]], last_id: str) -> RunPage:
        for source, scope in parts:
            found = await source.backend.fetch(source.queries.run_cursor(scope, last_id))
            if found:
                return RunPage(after_created_us=int(found[0][0]), after_id=last_id)
        raise BadParameter("last_id", "is not a run of this app and trigger source")

    async def apps(self, since_epoch_s: int) -> list[tuple[str, str, int]]:
        """(tenant_id, app_id, runs) of the apps with runs since the instant, busiest first."""
        found = await asyncio.gather(
            *(
                source.backend.fetch(source.queries.apps_with_runs(since_epoch_s, source.end_us))
                for source in self.sources
            )
        )
        runs: dict[tuple[str, str], int] = {}
        for app_rows in found:
            for tenant, app, count in app_rows:
                key = (str(tenant), str(app))
                runs[key] = runs.get(key, 0) + int(count)
        ranked = sorted(runs.items(), key=lambda item: (-item[1], item[0][1], item[0][0]))
        return [(tenant, app, count) for (tenant, app), count in ranked]

    async def run_detail(self, request: RunDetailRequest) -> RunDetail | None:
        for source in self.sources:
            query = source.queries.run_detail(
                request.tenant_id, request.app_id, request.run_id, source.start_us, source.end_us
            )
            found = await source.backend.fetch(query)
            if found:
                return rows.run_detail(found[0])
        return None

    async def ping(self) -> None:
        """A trivial query on every source, for /readyz."""
        for source in self.sources:
            await source.backend.ping()


def _users_by_day(user_rows: Sequence[Row]) -> dict[int, set[str]]:
    users: dict[int, set[str]] = {}
    for day, user in user_rows:
        users.setdefault(int(day), set()).add(str(user))
    return users


def combine_daily_rows(
    parts: Sequence[Sequence[Row]], users: dict[int, set[str]], users_column: int | None
) -> list[tuple[Any, ...]]:
    """Rows `(day, value...)` of several sources as one: values add up per day, except distinct
    users, which are the size of the union on the days given in `users` (the boundary day)."""
    merged: dict[int, list[int]] = {}
    for part in parts:
        for day, *values in part:
            current = merged.setdefault(int(day), [0] * len(values))
            for position, value in enumerate(values):
                current[position] += int(value or 0)
    if users_column is not None:
        for day, who in users.items():
            if day in merged:
                merged[day][users_column] = len(who)
    return [(day, *merged[day]) for day in sorted(merged)]
