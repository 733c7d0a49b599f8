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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextlib import suppress
from typing import Any, Generic, Literal, TypeVar

import msgspec
from cachetools import LRUCache

from app.fleet.answers import SharedAnswers
from app.fleet.link import SharedUnavailable
from app.stores.backend import BackendUnavailable, statement_scope

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
CacheResult = Literal["hit", "miss", "stale", "partial"]


class _Entry(msgspec.Struct):
    value: Any
    fresh_until: float
    stale_until: float


class EvictingLRU(LRUCache[K, V], Generic[K, V]):
    """An LRUCache that reports each entry it evicts to make room."""

    def __init__(
        self, maxsize: int, evicted: Callable[[K], None], getsizeof: Callable[[V], float] | None = None
    ) -> None:
        super().__init__(maxsize=maxsize, getsizeof=getsizeof)
        self._evicted = evicted

    def popitem(self) -> tuple[K, V]:
        key, value = super().popitem()
        self._evicted(key)
        return key, value


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
        shared: SharedAnswers | None = None,
        near: bool = True,
    ) -> None:
        """`near=False` keeps nothing in the process that the fleet shares, so every hit is read
        from Redis (STATS_NEAR_CACHE=off: the benchmark's measure of Redis alone)."""
        self._entries: EvictingLRU[tuple[str, Hashable], _Entry] = EvictingLRU(
            max_entries, self._evicted_globally
        )
        self._tenant_quota = max(1, int(max_entries * tenant_share))
        self._by_tenant: dict[str, EvictingLRU[Hashable, None]] = {}  # each tenant's own LRU order
        self._in_flight: dict[tuple[str, Hashable], _Load] = {}
        self._stale_max = stale_max
        self._clock = clock
        self.shared = shared
        self.near = near or shared is None

    def __len__(self) -> int:
        return len(self._entries)

    def tenant_entries(self, tenant: str) -> int:
        keys = self._by_tenant.get(tenant)
        return 0 if keys is None else len(keys)

    def peek(self, key: Hashable, *, tenant: str) -> Any | None:
        """A fresh value, or None; no loading."""
        entry = self._get(tenant, key)
        return entry.value if entry is not None and self._clock() < entry.fresh_until else None

    def put(
        self, key: Hashable, value: Any, ttl: float, *, tenant: str, stale_for: float | None = None
    ) -> None:
        now = self._clock()
        keys = self._by_tenant.get(tenant)
        if keys is None:
            keys = self._by_tenant[tenant] = EvictingLRU(
                self._tenant_quota, lambda own: self._forget(tenant, own)
            )
        keys[key] = None  # first: a tenant at its quota evicts its own entry, nobody else's
        stale_for = self._stale_max if stale_for is None else stale_for
        self._entries[(tenant, key)] = _Entry(value, now + ttl, now + ttl + stale_for)

    async def peek_many(
        self, keys: Sequence[Hashable], *, tenant: str, value_type: Any
    ) -> dict[Hashable, Any]:
        """The fresh values of `keys` (no loading): this replica's, then the fleet's."""
        found = {key: value for key in keys if (value := self.peek(key, tenant=tenant)) is not None}
        missing = [key for key in keys if key not in found]
        if self.shared is None or not missing:
            return found
        try:
            shared = await self.shared.get_many(tenant, missing, value_type)
        except SharedUnavailable:
            return found
        for key, one in shared.items():
            if one.fresh_s > 0:
                if self.near:
                    self.put(key, one.value, one.fresh_s, tenant=tenant, stale_for=one.left_s - one.fresh_s)
                found[key] = one.value
        return found

    async def store_many(
        self, entries: Sequence[tuple[Hashable, Any, float]], *, tenant: str, value_type: Any
    ) -> None:
        """Keep (key, value, ttl) entries here and, with Redis, for the fleet."""
        for key, value, ttl in entries if self.near else ():
            self.put(key, value, ttl, tenant=tenant)
        if self.shared is not None and entries:
            with suppress(SharedUnavailable):
                await self.shared.put_many(tenant, entries, value_type)

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
        fleet when `value_type` is given and the cache is shared)."""
        entry = self._get(tenant, key)
        now = self._clock()
        if entry is not None and now < entry.fresh_until:
            return entry.value, "hit"
        shared = self.shared if value_type is not None else None
        if shared is not None:
            fleet = await self.peek_many([key], tenant=tenant, value_type=value_type)
            if key in fleet:
                return fleet[key], "hit"
        try:
            value, elsewhere = await self._load_once(tenant, key, ttl, load, value_type if shared else None)
            return value, "hit" if elsewhere else "miss"
        except BackendUnavailable:
            if entry is not None and self._clock() < entry.stale_until:
                return entry.value, "stale"
            stale = await self._fleet_stale(key, tenant, value_type) if shared is not None else None
            if stale is not None:
                return stale, "stale"
            raise

    async def _fleet_stale(self, key: Hashable, tenant: str, value_type: Any) -> Any | None:
        assert self.shared is not None
        try:
            found = await self.shared.get_many(tenant, [key], value_type)
        except SharedUnavailable:
            return None
        return found[key].value if key in found else None

    def _get(self, tenant: str, key: Hashable) -> _Entry | None:
        entry = self._entries.get((tenant, key))
        if entry is not None:
            self._by_tenant[tenant][key]
        return entry

    def _forget(self, tenant: str, key: Hashable) -> None:
        self._entries.pop((tenant, key), None)

    def _evicted_globally(self, slot: tuple[str, Hashable]) -> None:
        tenant, key = slot
        keys = self._by_tenant.get(tenant)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._by_tenant[tenant]

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
                if self.shared is not None and value_type is not None:
                    value, elsewhere = await self.shared.load_once(slot[0], slot[1], ttl, value_type, load)
                else:
                    value, elsewhere = await load(), False
            if self.near or value_type is None:  # what the fleet does not share is kept here
                self.put(slot[1], value, ttl, tenant=slot[0])
            return value, elsewhere
        finally:
            if self._in_flight.get(slot) is running:
                del self._in_flight[slot]
