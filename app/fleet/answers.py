"""The answer cache's second level, shared by every replica through Redis.

What one replica computed is a hit on every other, and a new replica answers what the fleet
already serves without a statement. Identical misses anywhere run one load: the first replica
takes a lock (a lease, renewed while it loads) and writes the answer; the others wait for the
answer, and take over if the lock lapses without one (its holder died). A replica that takes the
lock looks for the answer once more before loading: its holder may have written it and let go
between the last look and the take.

Values are msgspec MessagePack, decoded with their type; the key carries a tag of that type's
schema and of the release (app/fleet/keys.py), so neither a changed struct nor a changed statement
reads another release's entries. A value that does not decode, or has no TTL, is a miss (logged
and counted), never an error; the next load overwrites it. Every key has a TTL: the answer's
freshness plus STATS_STALE_MAX, so stale answers can be served while the store fails, and Redis
memory stays bounded without the service (`maxmemory` with an LRU policy is safe: an evicted entry
is a miss). Freshness is read from the key's remaining TTL, Redis's clock.

Keys are tenant-scoped: `<prefix><format>:<release>:<tenant>:a:<type tag>:<digest of the key>`.
Authorization never goes through here: who may read what is decided by the keys and the source
(app/core/app_directory.py, app/http/console_auth.py), in the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextlib import suppress
from typing import Any, TypeVar

import msgspec
import structlog

from app.core.cache import Found
from app.fleet.link import LeasedLock, RedisLink, SharedUnavailable, get_with_ttl
from app.metrics import Metrics

log = structlog.get_logger("dify_stats.shared_cache")
T = TypeVar("T")

# The longest a replica waits for another's load before loading alone: a lock kept alive by
# someone else than a replica must not hold requests for ever. A load is mostly one or two
# statements in a row (a run's node executions: its span, then its page), each of at most
# STATS_QUERY_TIMEOUT: the app waits that many timeouts; a longer load is repeated once.
LOAD_WAIT_TIMEOUTS = 2
WAIT_MAX_S = LOAD_WAIT_TIMEOUTS * 30.0


class SharedAnswers:
    def __init__(
        self,
        link: RedisLink,
        stale_max: float,
        metrics: Metrics | None = None,
        wait_max_s: float = WAIT_MAX_S,
    ) -> None:
        self.link = link
        self.stale_max = stale_max
        self.metrics = metrics
        self.wait_max_s = wait_max_s

    def key(self, tenant: str, key: Hashable, value_type: Any) -> str:
        return self.link.data_key(tenant, "a", value_type, key)

    def _count(self, result: str, amount: int = 1) -> None:
        if self.metrics is not None and amount:
            self.metrics.shared_cache.labels(result=result).inc(amount)

    def _decode(self, data: Any, ttl_ms: int, value_type: Any) -> Found | None:
        """The value, or None when there is none, or none this service wrote: not of its type,
        too deep to decode, or without a TTL."""
        if data is None:
            return None
        try:
            if ttl_ms < 0:
                raise msgspec.ValidationError("no TTL")
            value = msgspec.msgpack.decode(data, type=value_type)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):  # RecursionError: too deep
            log.warning("shared_value_unreadable", value_type=str(value_type))
            self._count("unreadable")
            return None
        left = ttl_ms / 1000
        return Found(value, left - self.stale_max, left)

    async def get_many(self, tenant: str, keys: Sequence[Hashable], value_type: Any) -> dict[Hashable, Found]:
        """Whatever of `keys` the fleet holds (fresh or stale), in one round trip."""
        if not keys:
            return {}
        names = [self.key(tenant, key, value_type) for key in keys]
        try:
            answers = await self.link.run(lambda client: get_with_ttl(client, names))
        except SharedUnavailable:
            return {}  # while Redis is down, the fleet holds nothing for this replica
        found: dict[Hashable, Found] = {}
        for key, (data, ttl_ms) in zip(keys, answers, strict=True):
            decoded = self._decode(data, ttl_ms, value_type)
            if decoded is not None:
                found[key] = decoded
        fresh = sum(1 for one in found.values() if one.fresh_s > 0)
        self._count("hit", fresh)
        self._count("miss", len(keys) - fresh)
        return found

    async def put_many(
        self, tenant: str, entries: Sequence[tuple[Hashable, Any, float]], value_type: Any
    ) -> None:
        """Store (key, value, ttl) entries, each kept ttl + STATS_STALE_MAX."""
        writes = [
            (
                self.key(tenant, key, value_type),
                msgspec.msgpack.encode(value),
                int((ttl + self.stale_max) * 1000),
            )
            for key, value, ttl in entries
        ]
        writes = [write for write in writes if write[2] > 0]
        if not writes:
            return

        async def write(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            for name, data, ttl_ms in writes:
                pipe.set(name, data, px=ttl_ms)
            await pipe.execute()

        with suppress(SharedUnavailable):  # while Redis is down, this replica's answers stay its own
            await self.link.run(write)

    async def load_once(
        self, tenant: str, key: Hashable, ttl: float, value_type: Any, load: Callable[[], Awaitable[T]]
    ) -> tuple[T, bool]:
        """The answer, loaded by exactly one replica of the fleet at a time: (value, True) when
        another replica loaded it. Without Redis, this replica loads it alone."""
        name = self.key(tenant, key, value_type)
        lock = LeasedLock(self.link, name + ":lock")
        give_up_at = asyncio.get_running_loop().time() + self.wait_max_s
        try:
            try:
                found = await lock.wait(give_up_at, lambda: self._fresh(name, value_type))
            except SharedUnavailable:
                found = None  # Redis failed meanwhile: this replica loads it alone
            if found is not None:
                self._count("hit")
                return found.value, True
            value = await load()
            with suppress(SharedUnavailable):
                await self.put_many(tenant, [(key, value, ttl)], value_type)
            return value, False
        finally:
            await lock.release()

    async def _fresh(self, name: str, value_type: Any) -> Found | None:
        """The fresh answer under `name` (which may itself be None: no such run), or None."""
        [(data, ttl_ms)] = await self.link.run(lambda client: get_with_ttl(client, [name]))
        found = self._decode(data, ttl_ms, value_type)
        return found if found is not None and found.fresh_s > 0 else None
