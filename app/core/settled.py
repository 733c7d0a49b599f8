"""Settled days: read from the store once, then validated instead of read again.

A day is settled once it ended more than STATS_SETTLE_AFTER ago. Each measure's value of a settled
day (its point, or none on a day without runs) is kept per *scope* (tenant, app, trigger source,
zone) with the scope's *ledger*: `checked_s`, the wall clock up to which every kept day of the
scope is known to be current. Nothing expires a kept day but memory bounds (the tenant-fair LRU;
in Redis, a TTL of days). Every STATS_SETTLED_TTL the ledger is validated: one statement names the
created days of the scope that hold a run written to since `checked_s` less STATS_TIME_SLACK
(queries/changes.py: a paused run resumed weeks later, a late retry); only those days are
forgotten, to be read again when asked, and `checked_s` moves to the validation's start. With
Redis one replica validates for the fleet.

Why that is exact: a day kept from a read that started at `as_of_s` holds every version written
before `as_of_s` - slack (later ones may still have been in flight); a validation from `checked_s`
covers every version written since then. So a day is only kept while `as_of_s >= checked_s`: a
read that started before a validation ran is answered but not kept.

A kept day also says when its runs were last written (`Hint`: the largest `__time__` of their
versions, as of its read). While the day is not named by a validation, no version of its runs was
written between then and the last validation less the slack; so the runs of part of that day (a
range's edge) can be read from the writes up to the hint and those since the last validation,
not from every write since the day began (app/core/live.py). A read of a day's suffix (a range
starting inside it) leaves such a hint for that suffix too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol
from weakref import WeakValueDictionary

import msgspec

from app.core.lru import TenantLRU


class SettledScope(msgspec.Struct, frozen=True, array_like=True):
    """Where settled days are kept and validated together."""

    tenant_id: str
    app_id: str
    triggered_from: str
    timezone: str


class Hint(msgspec.Struct, frozen=True, array_like=True):
    """The runs created from `from_us` to the end of their day were last written at
    `last_written_s` (largest `__time__`), as of the read that kept it."""

    from_us: int
    last_written_s: int


class Kept(msgspec.Struct, frozen=True):
    """What a store holds of some days of one measure: `checked_s` (None: nothing kept of the
    scope yet), each known day's points (0 or 1), and each day's hint."""

    checked_s: float | None
    points: dict[int, tuple[Any, ...]]
    hints: dict[int, Hint]


class SettledStore(Protocol):
    """Where the kept days live: this process alone (LocalSettledDays) or the fleet's Redis
    (app/fleet/settled.py). Days are local day numbers (days since 1970-01-01)."""

    async def read(self, scope: SettledScope, measure: str, days: Sequence[int], point_type: Any) -> Kept: ...

    async def keep(
        self,
        scope: SettledScope,
        measure: str,
        points: dict[int, tuple[Any, ...]],
        hints: dict[int, Hint],
        as_of_s: float,
        point_type: Any,
    ) -> bool:
        """Keep the days read at `as_of_s`, unless a validation has run since (False)."""
        ...

    async def validated(
        self, scope: SettledScope, checked_s: float, changed: frozenset[int] | None, now_s: float
    ) -> None:
        """Apply a validation that started at `now_s` from the ledger's `checked_s`: forget the
        `changed` days (None: every day), unless another validation was applied meanwhile."""
        ...

    def validating(self, scope: SettledScope) -> Any:
        """An async context manager: one validation of the scope at a time (fleet-wide with Redis)."""
        ...


class _Ledger:
    """One scope's kept days, in this process."""

    __slots__ = ("checked_s", "hints", "points")

    def __init__(self, checked_s: float) -> None:
        self.checked_s = checked_s
        self.points: dict[tuple[str, int], tuple[Any, ...]] = {}
        self.hints: dict[int, Hint] = {}

    def weight(self) -> int:
        return 1 + len(self.points) + len(self.hints)


class LocalSettledDays:
    """Settled days kept in this process, at most `max_entries` days (each measure's day and each
    hint count one), one tenant at most its share."""

    def __init__(self, max_entries: int, tenant_share: float) -> None:
        self._ledgers: TenantLRU[_Ledger] = TenantLRU(max_entries, tenant_share, _Ledger.weight)
        self._locks: WeakValueDictionary[SettledScope, asyncio.Lock] = WeakValueDictionary()

    @property
    def entries(self) -> int:
        return self._ledgers.weight

    async def read(self, scope: SettledScope, measure: str, days: Sequence[int], point_type: Any) -> Kept:
        ledger = self._ledgers.get(scope.tenant_id, scope)
        if ledger is None:
            return Kept(None, {}, {})
        points = {day: ledger.points[(measure, day)] for day in days if (measure, day) in ledger.points}
        hints = {day: ledger.hints[day] for day in days if day in ledger.hints}
        return Kept(ledger.checked_s, points, hints)

    async def keep(
        self,
        scope: SettledScope,
        measure: str,
        points: dict[int, tuple[Any, ...]],
        hints: dict[int, Hint],
        as_of_s: float,
        point_type: Any,
    ) -> bool:
        ledger = self._ledgers.get(scope.tenant_id, scope)
        if ledger is None:
            ledger = _Ledger(as_of_s)
        elif as_of_s < ledger.checked_s:
            return False
        ledger.points.update({(measure, day): value for day, value in points.items()})
        for day, hint in hints.items():
            ledger.hints[day] = wider(ledger.hints.get(day), hint)
        return self._ledgers.put(scope.tenant_id, scope, ledger)  # re-weighed

    async def validated(
        self, scope: SettledScope, checked_s: float, changed: frozenset[int] | None, now_s: float
    ) -> None:
        ledger = self._ledgers.get(scope.tenant_id, scope)
        if ledger is None or ledger.checked_s != checked_s:
            return
        if changed is None:
            ledger.points.clear()
            ledger.hints.clear()
        else:
            ledger.points = {key: value for key, value in ledger.points.items() if key[1] not in changed}
            ledger.hints = {day: hint for day, hint in ledger.hints.items() if day not in changed}
        ledger.checked_s = now_s
        self._ledgers.put(scope.tenant_id, scope, ledger)

    @asynccontextmanager
    async def validating(self, scope: SettledScope) -> AsyncIterator[None]:
        lock = self._locks.get(scope)
        if lock is None:
            lock = self._locks[scope] = asyncio.Lock()
        async with lock:
            yield


def wider(kept: Hint | None, new: Hint) -> Hint:
    """Of two hints of one day, the one covering more of it (an earlier `from_us`); both are true."""
    return new if kept is None or new.from_us < kept.from_us else kept
