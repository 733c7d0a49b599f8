"""The answer cache's second level, shared by every replica through Redis.

What one replica computed is a hit on every other, and a new replica answers what the fleet
already serves without a statement. Identical misses anywhere run one load: the first replica
takes a lock (SET NX with a lease, renewed while it loads) and writes the answer; the others wait
for the answer, and take over if the lock lapses without one (its holder died).

Values are msgspec MessagePack, decoded with their type; the key carries a tag of that type's
schema, so a rolling deploy that changes a struct never reads another version's entries. A value
that does not decode is a miss (logged and counted), never an error. Every key has a TTL: the
answer's freshness plus STATS_STALE_MAX, so stale answers can be served while the store fails,
and Redis memory stays bounded without the service (`maxmemory` with an LRU policy is safe: an
evicted entry is a miss). Freshness is read from the key's remaining TTL, Redis's clock.

Keys are tenant-scoped: `<prefix>v1:<tenant>:a:<schema tag>:<digest of the cache key>`.
Authorization never goes through here (app/http/console_auth.py keeps its own, local cache).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextlib import suppress
from functools import cache
from typing import Any, TypeVar

import msgspec
import structlog

from app.core.cache import Found
from app.fleet.link import LeasedLock, RedisLink, SharedUnavailable
from app.metrics import Metrics

log = structlog.get_logger("dify_stats.shared_cache")
T = TypeVar("T")

WAIT_POLL_S = (0.02, 0.05, 0.1, 0.2)  # how often a waiter looks for the answer (then every 0.2 s)
# The longest a replica waits for another's load before loading alone: a lock kept alive by
# someone else than a replica must not hold requests for ever. A load is mostly one or two
# statements in a row (a run's node executions: its span, then its page), each of at most
# STATS_QUERY_TIMEOUT: the app waits that many timeouts; a longer load is repeated once.
LOAD_WAIT_TIMEOUTS = 2
WAIT_MAX_S = LOAD_WAIT_TIMEOUTS * 30.0


@cache
def schema_tag(value_type: Any) -> str:
    """Changes whenever the value type's shape does (field added, renamed, retyped)."""
    schema = msgspec.json.encode(msgspec.json.schema(value_type))
    return hashlib.sha256(schema).hexdigest()[:10]


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
        digest = hashlib.sha256(msgspec.msgpack.encode(key)).hexdigest()[:32]
        return self.link.key(tenant or "_", "a", schema_tag(value_type), digest)

    def _count(self, result: str, amount: int = 1) -> None:
        if self.metrics is not None and amount:
            self.metrics.shared_cache.labels(result=result).inc(amount)

    def _decode(self, data: bytes, ttl_ms: int, value_type: Any) -> Found | None:
        try:
            value = msgspec.msgpack.decode(data, type=value_type)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):  # RecursionError: too deep
            log.warning("shared_value_unreadable", value_type=str(value_type))
            self._count("unreadable")
            return None
        left = ttl_ms / 1000 if ttl_ms > 0 else 0.0
        return Found(value, left - self.stale_max, left)

    async def get_many(self, tenant: str, keys: Sequence[Hashable], value_type: Any) -> dict[Hashable, Found]:
        """Whatever of `keys` the fleet holds (fresh or stale), in one round trip; nothing while
        Redis is down."""
        if not keys:
            return {}
        names = [self.key(tenant, key, value_type) for key in keys]

        async def read(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.get(name)
                pipe.pttl(name)
            return await pipe.execute()  # type: ignore[no-any-return]

        try:
            answers = await self.link.run(read)
        except SharedUnavailable:
            return {}
        found: dict[Hashable, Found] = {}
        for key, data, ttl_ms in zip(keys, answers[0::2], answers[1::2], strict=True):
            decoded = None if data is None else self._decode(data, int(ttl_ms), value_type)
            if decoded is not None:
                found[key] = decoded
        self._count("hit", sum(1 for one in found.values() if one.fresh_s > 0))
        self._count("miss", len(keys) - sum(1 for one in found.values() if one.fresh_s > 0))
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
        give_up_at = asyncio.get_running_loop().time() + self.wait_max_s
        while True:
            lock = LeasedLock(self.link, name + ":lock")
            try:
                taken = await lock.try_take()
            except SharedUnavailable:
                return await load(), False
            alone = not taken and asyncio.get_running_loop().time() >= give_up_at
            if alone:  # whoever holds the lock has held it too long
                log.warning("shared_lock_waited_too_long", waited_s=self.wait_max_s)
            if taken or alone:
                try:
                    value = await load()
                    await self.put_many(tenant, [(key, value, ttl)], value_type)
                    return value, False
                finally:
                    if taken:
                        await lock.release()
            waited = await self._wait_for(name, lock, value_type, give_up_at)
            if waited is not None:
                return waited, True

    async def _wait_for(self, name: str, lock: LeasedLock, value_type: Any, give_up_at: float) -> Any | None:
        """The fresh answer another replica is loading, once it is there; None when its lock is
        gone without a fresh answer (it failed or died: the caller tries to load it itself), or
        at `give_up_at` (loop time)."""
        polls = iter(WAIT_POLL_S)
        while asyncio.get_running_loop().time() < give_up_at:
            await asyncio.sleep(next(polls, WAIT_POLL_S[-1]))
            try:
                data, ttl_ms = await self.link.run(lambda client: _get_with_ttl(client, name))
                found = None if data is None else self._decode(data, int(ttl_ms), value_type)
                if found is not None and found.fresh_s > 0:
                    self._count("hit")
                    return found.value
                if not await lock.held_elsewhere():  # its holder finished, failed or died
                    return None
            except SharedUnavailable:
                return None
        return None


async def _get_with_ttl(client: Any, name: str) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    pipe.get(name)
    pipe.pttl(name)
    return await pipe.execute()  # type: ignore[no-any-return]
