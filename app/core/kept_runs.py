"""The per-run state kept for live days, so that a dashboard's refresh costs the versions written
since its last read, not the days it shows.

`KeptRuns` holds, for one tenant, app, trigger source and zone, every run created in a range
[since_us, until_us) (until_us None: to now): its local day, created time, user and latest-version
key (queries/run_rows.py), and what the key carries of the latest version: tokens, status and
duration. Per day it keeps the tallies the daily measures need (runs, runs per user, tokens, runs
per status, the finished runs' durations in order), so a whole day answers at once; a partial day
walks that day's runs. Merging rows read again is exact: a run's key only ever grows to the latest
version's, and its created time and user never change (the writer's invariant 1).

Each day also remembers when its runs were last written (the largest `__time__` read), so that
a day handed over to the settled days when it settles (app/core/live.py) carries its hint
(app/core/settled.py).

`RunStateStore` bounds the memory: at most STATS_LIVE_RUNS_MAX runs over all kept states, one
tenant at most STATS_TENANT_SHARE of them; a state that would not fit is not kept and its days
are re-read as before.
"""

from __future__ import annotations

import asyncio
import sys
import time
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Hashable, Iterable
from typing import NamedTuple
from weakref import WeakValueDictionary

import msgspec
from cachetools import TTLCache

from app.core.lru import TenantLRU
from app.core.measures import duration_tallies, status_tallies
from queries.dialects import DURATION_WIDTH, LATEST_KEY_PREFIX, duration_from_key
from queries.rows import DailyRow, RunStateRow

_TOKENS = slice(LATEST_KEY_PREFIX - 20, LATEST_KEY_PREFIX)  # total_tokens in latest_key_sql's key
_DURATION = slice(LATEST_KEY_PREFIX, LATEST_KEY_PREFIX + DURATION_WIDTH)  # then run_rows' duration
_STATUS = slice(LATEST_KEY_PREFIX + DURATION_WIDTH, None)  # and status


def _tokens(key: str) -> int:
    """The tokens in a key; a negative count (never written by Dify) reads as itself, not a failure."""
    return int(key[_TOKENS].lstrip("0") or "0")


class KeptRun(msgspec.Struct, frozen=True, gc=False):
    created_us: int
    created_by: str
    # The latest version, as read from its key (queries/run_rows.py): the key up to its tokens, then
    # what follows read out once (tallied often), so the key's tail is not kept twice.
    key_prefix: str
    tokens: int
    status: str  # interned: a few distinct values
    duration_us: int | None  # None while unfinished (or unknown)

    def order(self) -> tuple[str, bool, int, str]:
        """The whole key's order (duration digits sort as the numbers, no duration lowest)."""
        return (self.key_prefix, self.duration_us is not None, self.duration_us or 0, self.status)


def kept_run(created_us: int, created_by: str, key: str) -> KeptRun:
    """A run as run_rows reads it: what its latest-version key carries, read out once."""
    duration = duration_from_key(key[_DURATION])
    prefix = key[:LATEST_KEY_PREFIX]
    return KeptRun(created_us, created_by, prefix, _tokens(key), sys.intern(key[_STATUS]), duration)


class Wanted(NamedTuple):
    """Which aggregates besides runs a measure reads (a partial day computes only those)."""

    users: bool = True
    tokens: bool = True
    statuses: bool = True
    durations: bool = True


EVERY_AGGREGATE = Wanted()


class _Day:
    """One local day's runs and their running totals."""

    __slots__ = ("durations", "first_us", "last_us", "last_written_s", "runs", "statuses", "tokens", "users")

    def __init__(self) -> None:
        self.runs: dict[str, KeptRun] = {}
        self.users: Counter[str] = Counter()
        self.tokens = 0
        self.statuses: Counter[str] = Counter()
        self.durations: list[int] = []  # of the finished runs, ascending
        self.first_us = self.last_us = 0
        self.last_written_s = 0  # the largest __time__ of its runs' versions read

    def add(self, run_id: str, run: KeptRun) -> bool | None:
        """Merge one run's read: True when the run is new to the state, False when it moved it to
        a later version, None when it changed nothing."""
        known = self.runs.get(run_id)
        if known is not None:
            if run.order() > known.order():
                self._tally(known, -1)
                self._tally(run, 1)
                self.runs[run_id] = msgspec.structs.replace(
                    run, created_us=known.created_us, created_by=known.created_by
                )
                return False
            return None
        if not self.runs:
            self.first_us = self.last_us = run.created_us
        self.runs[run_id] = run
        self.users[run.created_by] += 1
        self._tally(run, 1)
        self.first_us, self.last_us = min(self.first_us, run.created_us), max(self.last_us, run.created_us)
        return True

    def _tally(self, run: KeptRun, sign: int) -> None:
        """Count a run's latest version in (1) or out (-1) of the day's tallies."""
        self.tokens += sign * run.tokens
        self.statuses[run.status] += sign
        if run.duration_us is None:
            return
        if sign > 0:
            insort(self.durations, run.duration_us)
        else:
            del self.durations[bisect_left(self.durations, run.duration_us)]

    def row(self, day: int, low_us: int, high_us: int, wanted: Wanted) -> DailyRow | None:
        """The day's tallies over the runs created in [low_us, high_us); a partial day counts
        only the `wanted` aggregates (it walks the day's runs)."""
        if self.last_us < low_us or self.first_us >= high_us:
            return None
        if low_us <= self.first_us and self.last_us < high_us:
            return DailyRow(
                day=day,
                runs=len(self.runs),
                users=len(self.users),
                tokens=self.tokens,
                **status_tallies(self.statuses),
                **duration_tallies(self.durations),
            )
        inside = [run for run in self.runs.values() if low_us <= run.created_us < high_us]
        if not inside:
            return None
        users = len({run.created_by for run in inside}) if wanted.users else 0
        tokens = sum(run.tokens for run in inside) if wanted.tokens else 0
        statuses = status_tallies(Counter(run.status for run in inside) if wanted.statuses else {})
        durations = (
            sorted(run.duration_us for run in inside if run.duration_us is not None)
            if wanted.durations
            else []
        )
        return DailyRow(
            day=day, runs=len(inside), users=users, tokens=tokens, **statuses, **duration_tallies(durations)
        )


class KeptRuns:
    """Every run of one scope created in [since_us, until_us), as of the last read."""

    def __init__(self, since_us: int, until_us: int | None, built_at_s: float = 0.0) -> None:
        self.since_us = since_us
        self.until_us = until_us
        self.built_at_s = built_at_s  # the wall clock of its first, whole read
        self.read_at_s: float | None = None  # the wall clock when the last read started
        self.size = 0  # runs held
        # With Redis: which of the fleet's whole reads this state started from, and how many of
        # its refreshes it holds (app/fleet/kept_runs.py).
        self.generation: str | None = None
        self.seq = 0
        self._days: dict[int, _Day] = {}

    def merge(self, rows: Iterable[RunStateRow]) -> list[RunStateRow]:
        """Merge a read; the rows that changed the state (what other replicas need of it)."""
        changed = []
        for row in rows:
            day = self._days.get(row.day)
            if day is None:
                day = self._days[row.day] = _Day()
            day.last_written_s = max(day.last_written_s, int(row.last_written))
            run = kept_run(int(row.created_us), sys.intern(str(row.created_by)), str(row.latest_key))
            outcome = day.add(row.id, run)
            if outcome is not None:
                changed.append(row)
            if outcome:
                self.size += 1
        return changed

    def forget_before(self, since_us: int) -> None:
        """Drop the days that ended before `since_us` (they have settled) and cover from it."""
        for number in [number for number, day in self._days.items() if day.last_us < since_us]:
            self.size -= len(self._days.pop(number).runs)
        self.since_us = max(self.since_us, since_us)

    def last_written_s(self, day: int) -> int | None:
        """When the day's runs were last written, as read (None: no run read that day)."""
        found = self._days.get(day)
        return None if found is None else found.last_written_s

    def rows(self, low_us: int, high_us: int, wanted: Wanted = EVERY_AGGREGATE) -> list[DailyRow]:
        """Per local day, the runs created in [low_us, high_us) (within what the state covers)."""
        found = (day.row(number, low_us, high_us, wanted) for number, day in sorted(self._days.items()))
        return [row for row in found if row is not None]


def _weight(state: KeptRuns) -> int:
    """What a state costs against the bound: its runs, and an empty state as one."""
    return max(1, state.size)


class RunStateStore:
    """Kept states by key, bounded by the runs they hold (app/core/lru.py)."""

    def __init__(self, max_runs: int, tenant_share: float, too_large_for_s: float = 3600.0) -> None:
        self.max_runs = max_runs
        self._states: TenantLRU[KeptRuns] = TenantLRU(max_runs, tenant_share, _weight)
        self._locks: WeakValueDictionary[tuple[str, Hashable], asyncio.Lock] = WeakValueDictionary()
        # Scopes whose state did not fit: not tried again for a while (each try is a full read).
        self._too_large: TTLCache[tuple[str, Hashable], bool] = TTLCache(
            4096, too_large_for_s, timer=time.monotonic
        )

    @property
    def runs(self) -> int:
        return self._states.weight

    def lock(self, tenant: str, key: Hashable) -> asyncio.Lock:
        """One read of a scope's state at a time: the others wait, then find it fresh."""
        slot = (tenant, key)
        found = self._locks.get(slot)
        if found is None:
            found = self._locks[slot] = asyncio.Lock()
        return found

    def get(self, tenant: str, key: Hashable) -> KeptRuns | None:
        return self._states.get(tenant, key)

    def may_keep(self, tenant: str, key: Hashable) -> bool:
        return self.max_runs > 0 and (tenant, key) not in self._too_large

    def keep(self, tenant: str, key: Hashable, state: KeptRuns) -> bool:
        """Keep (or re-size) a state; False, and the state dropped, when it cannot fit."""
        if self._states.put(tenant, key, state):
            return True
        self._too_large[(tenant, key)] = True
        return False
