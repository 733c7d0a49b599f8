"""A daily measure over a bounded range, top to bottom: plan the range, look up its settled days
(validated when due), read what is not known, answer edges and live days from kept runs, combine.

Daily measures are additive by day (terminals are distinct *per day*), so a range is answered in
parts (app/core/plan.py): its settled whole days from what is kept of them (app/core/settled.py),
its edges and live days from runs kept one by one (app/core/live.py), and whatever is neither from
the store, in as few statements as the parts allow: every read scans the writes from its start to
now, so the parts to read are joined (more than two become one range), and a range's first edge
is read with them when something is read anyway. A dashboard refreshing `now-90d..now` thus reads
about its new versions, plus one small validation statement per STATS_SETTLED_TTL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import msgspec

from app.config import Settings
from app.core import answers
from app.core.live import KeptDays, Part, settled_scope
from app.core.measures import DailyMeasure
from app.core.plan import DaySpan, Edge, RangePlan, plan_range, settled_before_us
from app.core.settled import Hint, Kept, SettledScope, SettledStore
from app.stores.repository import StatsRepository
from queries.rows import DailyRow
from schemas.requests import DailyRequest

Outcome = Literal["hit", "miss", "partial"]


class DailyRanges:
    def __init__(
        self,
        repository: StatsRepository,
        settled: SettledStore,
        kept: KeptDays,
        settings: Settings,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.repository = repository
        self.settled = settled
        self.kept = kept
        self.settings = settings
        self.wall_clock = wall_clock

    async def answer(self, measure: DailyMeasure, request: DailyRequest) -> tuple[list[Any], Outcome]:
        """The measure's points over [start_us, end_us) (both given), and where they came from."""
        assert request.start_us is not None and request.end_us is not None
        now_s = self.wall_clock()
        zone = request.timezone
        settled_before = settled_before_us(zone, now_s, self.settings.settle_after)
        plan = plan_range(
            zone,
            request.start_us,
            request.end_us,
            settled_before,
            self.kept.may_keep_live(request),
            self.repository.keeps_runs,
        )
        scope = settled_scope(request)
        live: list[Awaitable[Part]] = []
        if plan.live_from_us is not None:
            low = max(request.start_us, plan.live_from_us)
            live = [self.kept.live(measure, request, plan.live_from_us, low)]
            if self.kept.holds_settled(request, plan.live_from_us):
                # Days settled since the live state's last read: it hands them over first, so
                # that they need no read of their own.
                live = [_done(await live[0])]
        known = await self._validated(scope, measure, request, plan, now_s)

        # What must be read: settled days not known, and what nothing keeps; a first edge with no
        # hint yet is read with them (its read leaves the hint its later reads are bounded by).
        missing = [span for span in plan.days if span.number not in known.points]
        reads = [*((span.start_us, span.end_us) for span in missing), *plan.reads]
        folded = [edge for edge in plan.edges if reads and _first_without_hint(edge, known)]
        segments = _joined([*reads, *((edge.low_us, edge.high_us) for edge in folded)])
        kept_edges = [edge for edge in plan.edges if not _inside(edge.low_us, edge.high_us, segments)]
        parts = await asyncio.gather(
            *(self._read(measure, request, plan, segment) for segment in segments),
            *(
                self.kept.edge(measure, request, edge, known.hints.get(edge.span.number), known.checked_s)
                for edge in kept_edges
            ),
            *live,
        )
        remembered = [
            point
            for span in plan.days
            if not _inside(span.start_us, span.end_us, segments)
            for point in known.points[span.number]
        ]
        points = {item.date: item for item in [*remembered, *(p for part in parts for p in part.points)]}
        answer = [points[day] for day in sorted(points)]
        if not remembered and not any(part.remembered for part in parts):
            return answer, "miss"
        return answer, "partial" if any(part.read for part in parts) else "hit"

    async def _validated(
        self, scope: SettledScope, measure: DailyMeasure, request: DailyRequest, plan: RangePlan, now_s: float
    ) -> Kept:
        """What is kept of the plan's settled days and of its edges' days, validated first when the
        scope's last validation is STATS_SETTLED_TTL old (once for the fleet)."""
        days = [span.number for span in plan.days] + [edge.span.number for edge in plan.edges]
        if not days:
            return Kept(None, {}, {})
        point_type = _days_type(measure)
        known = await self.settled.read(scope, measure.name, days, point_type)
        if not self._due(known, now_s):
            return known
        async with self.settled.validating(scope):
            known = await self.settled.read(scope, measure.name, days, point_type)  # done meanwhile?
            if self._due(known, now_s):
                assert known.checked_s is not None
                started_s = self.wall_clock()
                changed = await self.repository.changed_days(
                    request,
                    written_since_s=int(known.checked_s) - self.settings.time_slack,
                    before_us=settled_before_us(request.timezone, now_s, self.settings.settle_after),
                )
                await self.settled.validated(scope, known.checked_s, changed, started_s)
                known = await self.settled.read(scope, measure.name, days, point_type)
        return known

    def _due(self, known: Kept, now_s: float) -> bool:
        return known.checked_s is not None and now_s - known.checked_s >= self.settings.settled_ttl

    async def _read(
        self, measure: DailyMeasure, request: DailyRequest, plan: RangePlan, segment: tuple[int, int]
    ) -> Part:
        """One segment from the store; the settled whole days in it (and the hints of its days)
        are kept, as of when the read started."""
        low, high = segment
        started_s = self.wall_clock()
        rows = await self.repository.daily_rows(
            measure, msgspec.structs.replace(request, start_us=low, end_us=high)
        )
        by_day = {int(row.day): row for row in rows if row.day is not None}
        whole = [span for span in plan.days if low <= span.start_us and span.end_us <= high]
        starts = [edge for edge in plan.edges if low <= edge.low_us and edge.high_us <= high]
        hints = {
            **_hints(self.repository, by_day, [(span, span.start_us) for span in whole]),
            **_hints(
                self.repository, by_day, [(edge.span, edge.low_us) for edge in starts if _is_first(edge)]
            ),
        }
        if whole or hints:
            points = {span.number: _points(measure, by_day.get(span.number)) for span in whole}
            await self.settled.keep(
                settled_scope(request), measure.name, points, hints, started_s, _days_type(measure)
            )
        return Part(answers.daily_points(measure, rows), remembered=False, read=True)


async def _done(part: Part) -> Part:
    return part


def _days_type(measure: DailyMeasure) -> Any:
    return tuple[measure.point_type, ...]  # type: ignore[name-defined]


def _points(measure: DailyMeasure, row: DailyRow | None) -> tuple[Any, ...]:
    """A day's value: its point, or none (the store lists only days with runs)."""
    return () if row is None else tuple(answers.daily_points(measure, [row]))


def _hints(
    repository: StatsRepository, by_day: dict[int, DailyRow], suffixes: Sequence[tuple[DaySpan, int]]
) -> dict[int, Hint]:
    """For each day read from `from_us` to its end: when those runs were last written, where the
    source can say (a LogStore on the shortcut plan); a day without runs had none written."""
    found = {}
    for span, from_us in suffixes:
        if not repository.keeps_runs(span.start_us, span.end_us):
            continue
        row = by_day.get(span.number)
        if row is None:
            found[span.number] = Hint(from_us, 0)
        elif row.last_written is not None:
            found[span.number] = Hint(from_us, int(row.last_written))
    return found


def _is_first(edge: Edge) -> bool:
    """An edge that runs to its day's end: a range's first day, whose later reads (the range
    moving on with now) are suffixes of it."""
    return edge.high_us == edge.span.end_us


def _first_without_hint(edge: Edge, known: Kept) -> bool:
    hint = known.hints.get(edge.span.number)
    return _is_first(edge) and (hint is None or hint.from_us > edge.low_us)


def _joined(segments: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Segments in order, touching ones joined; more than two become one, from the first to the
    last: each read scans the writes from its start to now, so one more costs about as much."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted(segments):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    if len(merged) > 2:
        merged = [(merged[0][0], merged[-1][1])]
    return merged


def _inside(low: int, high: int, segments: list[tuple[int, int]]) -> bool:
    return any(a <= low and high <= b for a, b in segments)
