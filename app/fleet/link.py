"""The one Redis replicas share (STATS_REDIS_URL, or Sentinel as Dify configures it).

Redis accelerates; it is never a source. Every call is bounded by CALL_TIMEOUT (about a second),
and the first failure opens a circuit: callers get `SharedUnavailable` at once and fall back to
what one process does alone (its own cache, a local share of the query budget), while one
background task pings every RECONNECT_EVERY_S and closes the circuit when Redis answers again.

Each replica also beats a heart every HEARTBEAT_S into a sorted set scored by Redis's own clock, so
that every replica knows how many are alive (`replicas_seen`): while Redis is down, a replica uses
its share of the budget, STATS_POOL_SIZE divided by the replicas last seen.

Keys: every key is under STATS_REDIS_PREFIX with this module's format version, and has a TTL.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import Any, Literal, NamedTuple, TypeVar

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from app.config import RedisSettings
from app.metrics import Metrics

log = structlog.get_logger("dify_stats.redis")
T = TypeVar("T")

CALL_TIMEOUT = 1.0  # seconds for any one call to Redis
RECONNECT_EVERY_S = 1.0
HEARTBEAT_S = 5.0
HEARTBEAT_TTL_MS = 15_000  # a replica not heard of for this long is gone
FORMAT = "v1"  # bumped when the layout of keys changes; value types carry their own (app/fleet/answers.py)

LOCK_LEASE_MS = 10_000  # a dead holder's lock lapses within this; renewed every third of it
# A lease this service wrote never runs longer than its length: an entry dated further ahead
# (beyond this margin for the call in flight) was written by someone else and is removed.
FORGED_AHEAD_MS = 1_000

# Beat one replica's heart with Redis's own clock; answer how many replicas are alive.
_HEARTBEAT = """
if redis.call('TYPE', KEYS[1]).ok ~= 'zset' then redis.call('DEL', KEYS[1]) end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. (now_ms + tonumber(ARGV[2]) + tonumber(ARGV[3])), '+inf')
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
return redis.call('ZCARD', KEYS[1])
"""


_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# The lease left on a lock, after taking away one no replica wrote (no lease, or a longer one
# than LOCK_LEASE_MS: it would hold every replica off for as long). ARGV: the longest lease.
# Answers the PTTL left (-2: nobody holds it).
_LOCK_LEASE_LEFT = """
local left = redis.call('PTTL', KEYS[1])
if left == -1 or left > tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return -2
end
return left
"""


class LockScripts(NamedTuple):
    """LeasedLock's scripts, registered once per link (a call sends only the script's digest)."""

    lease_left: Any
    release: Any
    renew: Any


class SharedUnavailable(RuntimeError):
    """Redis did not answer (or is known down): do what one process does alone."""


class SharedUnreadable(SharedUnavailable):
    """Redis answered, but a key held something else than this service writes (a value of
    another type, written by hand or by another program): that call is a miss, Redis stays up."""


def _client(settings: RedisSettings) -> aioredis.Redis:
    """A client whose every call fails within about a second, retried once at once (an idle
    connection the server closed), never with a back-off that would hold a request."""
    options: dict[str, Any] = {
        "socket_timeout": CALL_TIMEOUT,
        "socket_connect_timeout": CALL_TIMEOUT,
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 30,
        "client_name": "dify-stats",
    }
    if settings.url is not None:
        if settings.url.startswith("rediss://") and settings.ca_file is not None:
            options["ssl_ca_certs"] = settings.ca_file
        # What the URL says wins over these (redis-py reads the URL last); config refuses both.
        options.update(username=settings.username, password=settings.password, db=settings.db)
        return aioredis.Redis.from_url(settings.url, **options)
    tls: dict[str, Any] = {}
    if settings.tls:
        tls = {"ssl": True, "ssl_cert_reqs": ssl.CERT_REQUIRED}
        if settings.ca_file is not None:
            tls["ssl_ca_certs"] = settings.ca_file
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        list(settings.sentinels),
        sentinel_kwargs={
            "socket_timeout": CALL_TIMEOUT,
            "socket_connect_timeout": CALL_TIMEOUT,
            "username": settings.sentinel_username,
            "password": settings.sentinel_password,
            **tls,
        },
        **options,
        **tls,
    )
    assert settings.sentinel_service_name is not None
    return sentinel.master_for(  # type: ignore[no-any-return]
        settings.sentinel_service_name,
        username=settings.username,
        password=settings.password,
        db=settings.db,
        **options,
        **tls,
    )


class RedisLink:
    """The client, the circuit around it, and the replica heartbeat."""

    def __init__(self, settings: RedisSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.replica_id = uuid.uuid4().hex
        self.client = _client(settings)
        self.state: Literal["up", "down"] = "up"
        self.replicas_seen: int | None = None  # None: never heard (then a replica uses the whole budget)
        self._heartbeat = self.client.register_script(_HEARTBEAT)
        self.lock_scripts = LockScripts(
            *(
                self.client.register_script(script)
                for script in (_LOCK_LEASE_LEFT, _RELEASE_LOCK, _RENEW_LOCK)
            )
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconnecting: asyncio.Task[None] | None = None
        self.recovered = asyncio.Event()  # set each time the circuit closes again

    @property
    def up(self) -> bool:
        return self.state == "up"

    def key(self, *parts: str) -> str:
        """A key of this deployment: the prefix, the format version, then `parts`."""
        return self.settings.prefix + ":".join((FORMAT, *parts))

    async def run(self, call: Callable[[aioredis.Redis], Awaitable[T]], timeout: float = CALL_TIMEOUT) -> T:
        """One call (or pipeline) to Redis within `timeout`; SharedUnavailable, and the circuit
        open, when it fails."""
        if not self.up:
            raise SharedUnavailable("redis is down")
        try:
            async with asyncio.timeout(timeout):
                return await call(self.client)
        except ResponseError as error:  # WRONGTYPE and the like: the data, not the server
            log.warning("redis_value_unreadable", error=str(error).split("\n")[0][:120])
            if self.metrics is not None:
                self.metrics.shared_cache.labels(result="unreadable").inc()
            raise SharedUnreadable("redis: unreadable value") from None
        except (RedisError, OSError, TimeoutError) as error:
            self.failed(error)
            raise SharedUnavailable(f"redis: {type(error).__name__}") from None

    def failed(self, error: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.redis_errors.labels(kind=type(error).__name__).inc()
        if not self.up:
            return
        self.state = "down"
        self.recovered.clear()
        log.warning("redis_down", error_type=type(error).__name__, retry_every_s=RECONNECT_EVERY_S)
        self._reconnecting = self._spawn(self._reconnect())

    async def start(self) -> None:
        """The heartbeat (and the replica count it answers) from now on."""
        await self.beat()
        self._spawn(self._beat_forever())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2 * CALL_TIMEOUT)
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await self.client.zrem(self.key("replicas"), self.replica_id)
        except (RedisError, OSError, TimeoutError):
            pass  # its heartbeat expires on its own
        await self.client.aclose()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        # A context of its own: background work belongs to no request (nor its log fields).
        task = asyncio.create_task(work, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def beat(self) -> None:
        """Say this replica is alive, and learn how many are."""
        try:
            seen = await self.run(
                lambda client: self._heartbeat(
                    keys=[self.key("replicas")],
                    args=[self.replica_id, HEARTBEAT_TTL_MS, FORGED_AHEAD_MS],
                    client=client,
                )
            )
        except SharedUnavailable:
            return
        self.replicas_seen = int(seen)
        if self.metrics is not None:
            self.metrics.replicas_seen.set(self.replicas_seen)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self.beat()

    async def _reconnect(self) -> None:
        while True:
            await asyncio.sleep(RECONNECT_EVERY_S)
            try:
                async with asyncio.timeout(CALL_TIMEOUT):
                    await self.client.ping()
            except (RedisError, OSError, TimeoutError):
                continue
            self.state = "up"
            self.recovered.set()
            log.info("redis_up")
            await self.beat()
            return


class LeasedLock:
    """One replica at a time: SET NX with a lease, renewed while held, released only by its
    holder, lapsing LOCK_LEASE_MS after a holder died. A key of that name without a lease, or with
    a longer one, was not written by this service (it would hold the fleet off): it is taken away."""

    def __init__(self, link: RedisLink, name: str) -> None:
        self.link = link
        self.name = name
        self.token = uuid.uuid4().hex
        self._renewing: asyncio.Task[None] | None = None

    async def try_take(self) -> bool:
        """Whether it is now held by this replica (SharedUnavailable without Redis)."""
        if await self.link.run(lambda client: client.set(self.name, self.token, nx=True, px=LOCK_LEASE_MS)):
            self._renewing = asyncio.create_task(self._keep(), context=contextvars.Context())
            return True
        return False

    async def held_elsewhere(self) -> bool:
        """Whether another replica holds it (a key no replica wrote is removed: nobody holds it)."""
        lease_left = self.link.lock_scripts.lease_left
        left = await self.link.run(
            lambda client: lease_left(keys=[self.name], args=[LOCK_LEASE_MS + FORGED_AHEAD_MS], client=client)
        )
        return bool(int(left) >= 0)

    async def release(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
        release = self.link.lock_scripts.release
        with suppress(SharedUnavailable):
            await asyncio.shield(
                self.link.run(lambda client: release(keys=[self.name], args=[self.token], client=client))
            )

    async def _keep(self) -> None:
        renew = self.link.lock_scripts.renew
        while True:
            await asyncio.sleep(LOCK_LEASE_MS / 3000)
            with suppress(SharedUnavailable):
                await self.link.run(
                    lambda client: renew(keys=[self.name], args=[self.token, LOCK_LEASE_MS], client=client)
                )
