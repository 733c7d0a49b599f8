"""The answer cache in front of every backend query.

- Bounded (`STATS_CACHE_MAX_ENTRIES`, least recently used goes first) and keyed by the caller on
  route + tenant + app + every normalized parameter, so tenants never share an entry.
- Fair: each tenant holds at most STATS_TENANT_SHARE of the entries; a tenant at its quota
  evicts its own least recently used entry, so one tenant's flood cannot flush the others.
- Each entry has its own freshness (live vs settled answers) and is kept until
  `STATS_STALE_MAX` past it, so a failing backend can still be answered with `stale`.
- Single flight: concurrent misses on one key share one load, which runs in a task of its own
  for as long as any of its callers still waits, and is cancelled (its statements with it) when
  the last one has gone.
- Shared (with STATS_REDIS_URL): behind this in-process cache, which stays the near cache that
  answers most hits, every replica reads and writes one second level (app/fleet/answers.py),
  and identical misses anywhere in the fleet run one load. Values are shared only where the
  caller names their type (so that they can be decoded safely); anything else stays local.
  Alone, the second level is NoSharedAnswers: it holds nothing and loads here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

import msgspec

from app.core.lru import TenantLRU
from app.stores.backend import BackendUnavailable, statement_scope

T = TypeVar("T")
CacheResult = Literal["hit", "miss", "stale", "partial"]


class Found(NamedTuple):
    """A value of the second level: how long it stays fresh (<= 0: stale, still servable while
    the store fails) and how long it is kept."""

    value: Any
    fresh_s: float
    left_s: float


class SharedAnswerStore(Protocol):
    """The second level behind this cache: the fleet's (app/fleet/answers.py), or none. It never
    fails: without Redis it holds nothing, and `load_once` loads here."""

    async def get_many(
        self, tenant: str, keys: Sequence[Hashable], value_type: Any
    ) -> dict[Hashable, Found]: ...

    async def put_many(
        self, tenant: str, entries: Sequence[tuple[Hashable, Any, float]], value_type: Any
    ) -> None: ...

    async def load_once(
        self, tenant: str, key: Hashable, ttl: float, value_type: Any, load: Callable[[], Awaitable[T]]
    ) -> tuple[T, bool]:
        """(value, whether another replica loaded it)."""
        ...


class NoSharedAnswers:
    """One process alone: no second level."""

    async def get_many(self, tenant: str, keys: Sequence[Hashable], value_type: Any) -> dict[Hashable, Found]:
        return {}

    async def put_many(
        self, tenant: str, entries: Sequence[tuple[Hashable, Any, float]], value_type: Any
    ) -> None:
        return None

    async def load_once(
        self, tenant: str, key: Hashable, ttl: float, value_type: Any, load: Callable[[], Awaitable[T]]
    ) -> tuple[T, bool]:
        return await load(), False


class _Entry(msgspec.Struct):
    value: Any
    fresh_until: float
    stale_until: float


class _Load:
    """One running load and how many callers still wait for it."""

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.waiters = 0


class AnswerCache:
    def __init__(
        self,
        max_entries: int,
        stale_max: float,
        tenant_share: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedAnswerStore | None = None,
        near: bool = True,
    ) -> None:
        """`near=False` keeps nothing in the process that the fleet shares, so every hit is read
        from the second level (STATS_NEAR_CACHE=off with Redis: the benchmark's measure of Redis
        alone)."""
        self._entries: TenantLRU[_Entry] = TenantLRU(max_entries, tenant_share)
        self._in_flight: dict[tuple[str, Hashable], _Load] = {}
        self._stale_max = stale_max
        self._clock = clock
        self.shared: SharedAnswerStore = shared or NoSharedAnswers()
        self.near = near

    def __len__(self) -> int:
        return len(self._entries)

    def tenant_entries(self, tenant: str) -> int:
        return self._entries.tenant_entries(tenant)

    def peek(self, key: Hashable, *, tenant: str) -> Any | None:
        """A fresh value, or None; no loading."""
        entry = self._entries.get(tenant, key)
        return entry.value if entry is not None and self._clock() < entry.fresh_until else None

    def put(
        self, key: Hashable, value: Any, ttl: float, *, tenant: str, stale_for: float | None = None
    ) -> None:
        now = self._clock()
        stale_for = self._stale_max if stale_for is None else stale_for
        self._entries.put(tenant, key, _Entry(value, now + ttl, now + ttl + stale_for))

    async def store(self, key: Hashable, value: Any, ttl: float, *, tenant: str, value_type: Any) -> None:
        """Keep an entry here (unless only the fleet keeps what it shares) and for the fleet."""
        if self.near:
            self.put(key, value, ttl, tenant=tenant)
        await self.shared.put_many(tenant, [(key, value, ttl)], value_type)

    async def get_or_load(
        self,
        key: Hashable,
        ttl: float,
        load: Callable[[], Awaitable[T]],
        *,
        tenant: str,
        value_type: Any = None,
    ) -> tuple[T, CacheResult]:
        """The answer: this replica's fresh one, the fleet's, or one load (one for the whole
        fleet when `value_type` is given: values are shared only where they can be decoded)."""
        entry = self._entries.get(tenant, key)
        if entry is not None and self._clock() < entry.fresh_until:
            return entry.value, "hit"
        if value_type is not None:
            fleet = (await self.shared.get_many(tenant, [key], value_type)).get(key)
            if fleet is not None and fleet.fresh_s > 0:
                if self.near:
                    stale_for = fleet.left_s - fleet.fresh_s
                    self.put(key, fleet.value, fleet.fresh_s, tenant=tenant, stale_for=stale_for)
                return fleet.value, "hit"
        try:
            value, elsewhere = await self._load_once(tenant, key, ttl, load, value_type)
            return value, "hit" if elsewhere else "miss"
        except BackendUnavailable:
            if entry is not None and self._clock() < entry.stale_until:
                return entry.value, "stale"
            if value_type is not None:
                stale = (await self.shared.get_many(tenant, [key], value_type)).get(key)
                if stale is not None:
                    return stale.value, "stale"
            raise

    async def _load_once(
        self, tenant: str, key: Hashable, ttl: float, load: Callable[[], Awaitable[T]], value_type: Any
    ) -> tuple[T, bool]:
        slot = (tenant, key)
        running = self._in_flight.get(slot)
        if running is None:
            running = self._in_flight[slot] = _Load()
            running.task = asyncio.create_task(self._load(slot, running, ttl, load, value_type))
            # Its callers receive its failure; one left in the same instant must not be warned about.
            running.task.add_done_callback(lambda done: done.cancelled() or done.exception())
        task = running.task
        assert task is not None
        running.waiters += 1
        try:
            result: tuple[T, bool] = await asyncio.shield(task)
            return result
        finally:
            running.waiters -= 1
            if running.waiters == 0 and not task.done():
                # The last caller has gone (failed, or its client disconnected): nobody needs
                # the answer any more, so its statements stop too.
                task.cancel()
                if self._in_flight.get(slot) is running:
                    del self._in_flight[slot]

    async def _load(
        self,
        slot: tuple[str, Hashable],
        running: _Load,
        ttl: float,
        load: Callable[[], Awaitable[T]],
        value_type: Any,
    ) -> tuple[T, bool]:
        """(value, whether another replica loaded it)."""
        try:
            async with statement_scope():
                if value_type is not None:
                    value, elsewhere = await self.shared.load_once(slot[0], slot[1], ttl, value_type, load)
                else:
                    value, elsewhere = await load(), False
            if self.near or value_type is None:  # what the fleet does not share is kept here
                self.put(slot[1], value, ttl, tenant=slot[0])
            return value, elsewhere
        finally:
            if self._in_flight.get(slot) is running:
                del self._in_flight[slot]
