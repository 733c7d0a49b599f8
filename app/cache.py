"""The answer cache in front of every backend query.

- Bounded (`STATS_CACHE_MAX_ENTRIES`, least recently used goes first) and keyed by the caller on
  route + tenant + app + every normalized parameter, so tenants never share an entry.
- Each entry has its own freshness (live vs settled answers) and is kept until
  `STATS_STALE_MAX` past it, so a failing backend can still be answered with `stale`.
- Single flight: concurrent misses on one key share one backend call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Literal, TypeVar

import msgspec
from cachetools import LRUCache

from app.backend import BackendUnavailable

T = TypeVar("T")
CacheResult = Literal["hit", "miss", "stale", "partial"]


class _Entry(msgspec.Struct):
    value: Any
    fresh_until: float
    stale_until: float


class AnswerCache:
    def __init__(
        self, max_entries: int, stale_max: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: LRUCache[Hashable, _Entry] = LRUCache(maxsize=max_entries)
        self._in_flight: dict[Hashable, asyncio.Future[Any]] = {}
        self._stale_max = stale_max
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: Hashable) -> Any | None:
        """A fresh value, or None; no loading."""
        entry = self._entries.get(key)
        return entry.value if entry is not None and self._clock() < entry.fresh_until else None

    def put(self, key: Hashable, value: Any, ttl: float) -> None:
        now = self._clock()
        self._entries[key] = _Entry(value, now + ttl, now + ttl + self._stale_max)

    async def get_or_load(
        self, key: Hashable, ttl: float, load: Callable[[], Awaitable[T]]
    ) -> tuple[T, CacheResult]:
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and now < entry.fresh_until:
            return entry.value, "hit"
        try:
            return await self._load_once(key, ttl, load), "miss"
        except BackendUnavailable:
            if entry is not None and self._clock() < entry.stale_until:
                return entry.value, "stale"
            raise

    async def _load_once(self, key: Hashable, ttl: float, load: Callable[[], Awaitable[T]]) -> T:
        running = self._in_flight.get(key)
        if running is not None:
            result: T = await asyncio.shield(running)
            return result
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: followers re-raise it, nobody else must
            raise
        else:
            self.put(key, value, ttl)
            future.set_result(value)
            return value
        finally:
            del self._in_flight[key]
