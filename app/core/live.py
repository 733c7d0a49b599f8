"""Live days and range edges, from runs kept one by one (app/core/kept_runs.py).

A kept state holds every run of one scope created in [since, until) (until None: to now), as of its
last read. A refresh reads only the versions written since that read, less STATS_TIME_SLACK for
versions that become readable late, so a dashboard's refresh costs its new versions, not its days.
- Live days (since the midnight of now - STATS_SETTLE_AFTER) are refreshed after STATS_CACHE_TTL
  and read whole again every FULL_READ_EVERY_S, which also counts a version later than the slack
  within the hour. When a live day settles, its tallies are handed to the settled days
  (app/core/settled.py), so no settled day is ever read from the store while a dashboard watches.
- An edge (part of a settled day at a range's start or end) is refreshed after STATS_SETTLED_TTL.
  Its first read is bounded by the day's hint where there is one: the writes up to when the day's
  runs were last written, and those since the last validation (app/core/settled.py says why
  nothing lies between), not every write since the day began.
With Redis, replicas share each state's reads (app/fleet/kept_runs.py): one reads the store, the
others catch up on what it read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, NamedTuple, Protocol

import msgspec
import structlog

from app.config import Settings
from app.core import answers
from app.core.days import touched_days
from app.core.kept_runs import KeptRuns, RunStateStore, Wanted
from app.core.measures import DAILY_MEASURES, DailyMeasure
from app.core.plan import DaySpan, Edge, day_span
from app.core.settled import Hint, SettledScope, SettledStore
from app.stores.repository import StatsRepository
from queries.rows import RunStateRow
from schemas.requests import DailyRequest

log = structlog.get_logger("dify_stats.live")
FULL_READ_EVERY_S = 3_600  # live states are read whole again this often (versions later than the slack)


class Part(NamedTuple):
    """Points of part of a range; `remembered`: some came from memory; `read`: some were read."""

    points: list[Any]
    remembered: bool
    read: bool


class SharedKeptRuns(Protocol):
    """What the fleet offers the kept states (app/fleet/kept_runs.py), or nothing (NoSharedRuns).
    It never fails: without Redis it answers as if no other replica existed."""

    async def catch_up(self, tenant: str, key: Hashable, state: KeptRuns | None) -> KeptRuns | None: ...

    async def record_whole(
        self, tenant: str, key: Hashable, state: KeptRuns, rows: list[RunStateRow]
    ) -> None: ...

    async def record_refresh(
        self, tenant: str, key: Hashable, state: KeptRuns, changed: list[RunStateRow]
    ) -> None: ...

    def reading(self, tenant: str, key: Hashable) -> AbstractAsyncContextManager[None]: ...


class NoSharedRuns:
    """One process alone: nothing to catch up on, nothing recorded, nobody else reading."""

    async def catch_up(self, tenant: str, key: Hashable, state: KeptRuns | None) -> KeptRuns | None:
        return state

    async def record_whole(
        self, tenant: str, key: Hashable, state: KeptRuns, rows: list[RunStateRow]
    ) -> None:
        return None

    async def record_refresh(
        self, tenant: str, key: Hashable, state: KeptRuns, changed: list[RunStateRow]
    ) -> None:
        return None

    def reading(self, tenant: str, key: Hashable) -> AbstractAsyncContextManager[None]:
        return nullcontext()


class _Reading(NamedTuple):
    """How a state is to be read: `since`/`until` its created range; `refresh_after` seconds
    between reads; `whole_every` seconds between whole reads (None: never, once it is kept);
    `hint` and `checked_s` bound its first read (app/core/settled.py)."""

    key: Hashable
    since: int
    until: int | None
    refresh_after: float
    whole_every: float | None
    hint: Hint | None = None
    checked_s: float | None = None


class KeptDays:
    def __init__(
        self,
        repository: StatsRepository,
        states: RunStateStore,
        shared: SharedKeptRuns,
        settled: SettledStore,
        settings: Settings,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.repository = repository
        self.states = states
        self.shared = shared
        self.settled = settled
        self.settings = settings
        self.wall_clock = wall_clock

    def may_keep_live(self, request: DailyRequest) -> bool:
        return self.states.may_keep(request.tenant_id, _live_key(request))

    async def live(self, measure: DailyMeasure, request: DailyRequest, live_from: int, low: int) -> Part:
        """[low, end) of the request from the live state, which holds the runs from `live_from` on."""
        assert request.end_us is not None
        reading = _Reading(_live_key(request), live_from, None, self.settings.cache_ttl, FULL_READ_EVERY_S)
        return await self._answer(measure, request, reading, low, request.end_us)

    async def edge(
        self,
        measure: DailyMeasure,
        request: DailyRequest,
        edge: Edge,
        hint: Hint | None,
        checked_s: float | None,
    ) -> Part:
        """Part of a settled day from that day's state (or the part of it from the hint on)."""
        span = edge.span
        bounded = hint is not None and checked_s is not None and hint.from_us <= edge.low_us
        reading = _Reading(
            (*_live_key(request), span.start_us, span.end_us),
            hint.from_us if bounded and hint is not None else span.start_us,
            span.end_us,
            self.settings.settled_ttl,
            None,
            hint if bounded else None,
            checked_s if bounded else None,
        )
        return await self._answer(measure, request, reading, edge.low_us, edge.high_us)

    def holds_settled(self, request: DailyRequest, live_from: int) -> bool:
        """Whether the live state holds days before `live_from`: days that settled since its last
        read, which its next answer hands over to the settled days."""
        state = self.states.get(request.tenant_id, _live_key(request))
        return state is not None and state.since_us < live_from

    async def _answer(
        self, measure: DailyMeasure, request: DailyRequest, reading: _Reading, low: int, high: int
    ) -> Part:
        tenant = request.tenant_id
        if not self.states.may_keep(tenant, reading.key):
            return Part(await self.repository.daily(measure, _within(request, low, high)), False, True)
        async with self.states.lock(tenant, reading.key):
            kept = self.states.get(tenant, reading.key)
            state = await self.shared.catch_up(tenant, reading.key, kept)
            remembered, read = state is not None, False
            if self._due(state, reading):
                async with self.shared.reading(tenant, reading.key):
                    # read meanwhile by another replica?
                    state = await self.shared.catch_up(tenant, reading.key, state)
                    if self._due(state, reading):
                        replaced = self._whole_due(state, reading, self.wall_clock())
                        if state is not None and reading.until is None and replaced:
                            # before a whole read replaces it: what settled since its last read
                            await self._hand_over_settled(request, state, reading.since)
                        state, whole = await self._read(request, reading, state)
                        remembered, read = remembered and not whole, True
            assert state is not None
            if reading.until is None:
                await self._hand_over_settled(request, state, reading.since)
            state.forget_before(reading.since)
            if (read or state is not kept) and not self.states.keep(tenant, reading.key, state):
                log.info("kept_runs_too_large", runs=state.size, limit=self.states.max_runs)
        reads = measure.sql.reads
        wanted = Wanted(
            users=measure.counts_users,
            tokens="total_tokens" in reads,
            statuses="status" in reads,
            durations="duration_us" in reads,
        )
        return Part(answers.daily_points(measure, state.rows(low, high, wanted)), remembered, read)

    def _whole_due(self, state: KeptRuns | None, reading: _Reading, now_s: float) -> bool:
        return (
            state is None
            or state.since_us > reading.since
            or (reading.whole_every is not None and now_s - state.built_at_s >= reading.whole_every)
        )

    def _due(self, state: KeptRuns | None, reading: _Reading) -> bool:
        """Whether a state must be read: whole (none, too narrow, or due for its whole read), or
        its newest versions (its last read is older than `refresh_after`)."""
        now_s = self.wall_clock()
        return (
            self._whole_due(state, reading, now_s)
            or state is None
            or state.read_at_s is None
            or now_s - state.read_at_s >= reading.refresh_after
        )

    async def _read(
        self, request: DailyRequest, reading: _Reading, state: KeptRuns | None
    ) -> tuple[KeptRuns, bool]:
        """One read of the store for a state: whole (bounded by its hint, when it has one), or the
        versions written since its last read less the slack; recorded for the fleet.
        (state, whether it was read whole)."""
        now_s = self.wall_clock()
        slack = self.settings.time_slack
        whole = self._whole_due(state, reading, now_s)
        if whole or state is None:
            state = KeptRuns(reading.since, reading.until, built_at_s=now_s)
            if reading.hint is not None and reading.checked_s is not None:
                rows = await self._bounded_whole_read(request, reading, reading.hint, reading.checked_s)
            else:
                rows = await self.repository.run_rows(request, reading.since, reading.until, None)
        else:
            assert state.read_at_s is not None
            rows = await self.repository.run_rows(
                request, state.since_us, state.until_us, int(state.read_at_s) - slack
            )
        changed = state.merge(rows)
        state.read_at_s = now_s
        if whole:
            await self.shared.record_whole(request.tenant_id, reading.key, state, rows)
        else:
            await self.shared.record_refresh(request.tenant_id, reading.key, state, changed)
        return state, whole

    async def _bounded_whole_read(
        self, request: DailyRequest, reading: _Reading, hint: Hint, checked_s: float
    ) -> list[RunStateRow]:
        """The runs created in [since, until) from the writes up to their hint and those since
        the last validation less the slack: nothing of theirs was written in between."""
        slack = self.settings.time_slack
        recent = await self.repository.run_rows(request, reading.since, reading.until, int(checked_s) - slack)
        if hint.last_written_s < reading.since // 1_000_000 - slack:
            return recent  # the runs had no version as of the hint's read
        earlier = await self.repository.run_rows(
            request, reading.since, reading.until, None, written_until_s=hint.last_written_s
        )
        return [*earlier, *recent]

    async def _hand_over_settled(self, request: DailyRequest, state: KeptRuns, live_from: int) -> None:
        """The whole days the live state holds before `live_from` have settled: each measure's
        value of them, and their hints, become settled days, as of the state's last read."""
        if state.read_at_s is None or state.since_us >= live_from:
            return
        zone = request.timezone
        spans: list[DaySpan] = []
        for day in touched_days(zone, state.since_us, live_from):
            span = day_span(day, zone)
            if span is not None and state.since_us <= span.start_us and span.end_us <= live_from:
                spans.append(span)
        if not spans:
            return
        scope = settled_scope(request)
        hints = {}
        for span in spans:
            written = state.last_written_s(span.number)
            hints[span.number] = Hint(span.start_us, written if written is not None else 0)
        rows = {span.number: state.rows(span.start_us, span.end_us) for span in spans}
        for measure in DAILY_MEASURES:
            points = {number: tuple(answers.daily_points(measure, found)) for number, found in rows.items()}
            kept = await self.settled.keep(
                scope,
                measure.name,
                points,
                hints,
                state.read_at_s,
                tuple[measure.point_type, ...],  # type: ignore[name-defined]
            )
            if not kept:
                return  # validated since its read: those days are read again when asked
        log.debug("live_days_settled", days=[span.day.isoformat() for span in spans])


def settled_scope(request: DailyRequest) -> SettledScope:
    return SettledScope(request.tenant_id, request.app_id, request.triggered_from, request.timezone)


def _live_key(request: DailyRequest) -> tuple[str, ...]:
    return ("runs", request.app_id, request.triggered_from, request.timezone)


def _within(request: DailyRequest, low: int, high: int) -> DailyRequest:
    return msgspec.structs.replace(request, start_us=low, end_us=high)
