"""The one Redis replicas share (STATS_REDIS_URL, or Sentinel as Dify configures it).

Redis accelerates; it is never a source. Every call is bounded by CALL_TIMEOUT (about a second),
and the first failure opens a circuit: callers get `SharedUnavailable` at once and fall back to
what one process does alone (its own cache, a local share of the query budget), while one
background task pings every RECONNECT_EVERY_S and closes the circuit when Redis answers again.

Each replica also beats a heart every HEARTBEAT_S into a sorted set scored by Redis's own clock, so
that every replica knows how many are alive (`replicas_seen`): while Redis is down, a replica uses
its share of the budget, STATS_POOL_SIZE divided by the replicas last seen.

Keys: every key is under STATS_REDIS_PREFIX with a format version (app/fleet/keys.py), and has a
TTL. Every value a script reads is checked as an answer is (`LUA_PRELUDE`): a key of another type
or without a TTL is removed, a lease dated further ahead than a replica dates one is cut back or
removed. The service does not support Redis Cluster (one master, or Sentinel in front of one).
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from contextlib import suppress
from typing import Any, Literal, NamedTuple, TypeVar

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from app.config import RedisSettings
from app.fleet import keys
from app.metrics import Metrics

log = structlog.get_logger("dify_stats.redis")
T = TypeVar("T")

CALL_TIMEOUT = 1.0  # seconds for any one call to Redis
# Calls in flight at once per replica; more wait their turn (within their timeout) instead of
# failing for want of a connection (redis-py's pool holds 100, and refuses the 101st).
MAX_CALLS = 50
RECONNECT_EVERY_S = 1.0
HEARTBEAT_S = 5.0
HEARTBEAT_TTL_MS = 15_000  # a replica not heard of for this long is gone

LOCK_LEASE_MS = 10_000  # a dead holder's lock lapses within this; renewed every third of it
WAIT_POLL_S = (0.02, 0.05, 0.1, 0.2)  # how often a waiter looks again (then every 0.2 s)
# Leases are dated on the master's clock. After a Sentinel failover to a master whose clock is
# behind the old one's, every lease looks further ahead than a replica ever dates one: a lease
# dated up to this much too far ahead is a replica's, and is cut back to one lease (its holder
# renews it); one dated further ahead than that was written by someone else, and is removed.
CLOCK_SKEW_MS = 300_000

# Every script that reads the time starts with this: `now`, in ms on Redis's own clock (never a
# replica's), and the two rules every shared value a script reads is held to.
LUA_PRELUDE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- A key of another type, or without a TTL (every key of this service has one), was not written
-- by a replica: it is removed, and started afresh.
local function repair(key, kind)
  local found = redis.call('TYPE', key).ok
  if found ~= 'none' and (found ~= kind or redis.call('PTTL', key) < 0) then
    redis.call('DEL', key)
  end
end
-- Leases in a sorted set scored by their expiry: those past are gone; one dated further ahead
-- than `lease` ms is cut back to it within `skew` ms, and removed beyond.
local function fence(key, lease, skew)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', key, '(' .. (now + lease + skew), '+inf')
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, '(' .. (now + lease), now + lease + skew)) do
    redis.call('ZADD', key, now + lease, member)
  end
end
"""

# Beat one replica's heart; answer how many replicas are alive. ARGV: replica, ttl ms, skew ms.
_HEARTBEAT = (
    LUA_PRELUDE
    + """
local ttl, skew = tonumber(ARGV[2]), tonumber(ARGV[3])
repair(KEYS[1], 'zset')
fence(KEYS[1], ttl, skew)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 4)
return redis.call('ZCARD', KEYS[1])
"""
)

# Take a lock: 1 when taken, 0 when another replica holds it. A lock no replica wrote (of
# another type, without a lease, or dated beyond the skew) is removed first; one dated within
# the skew is cut back to a lease. ARGV: token, lease ms, skew ms.
_TAKE_LOCK = """
local lease, skew = tonumber(ARGV[2]), tonumber(ARGV[3])
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'none' then
  local left = redis.call('PTTL', KEYS[1])
  if kind ~= 'string' or left < 0 or left > lease + skew then
    redis.call('DEL', KEYS[1])
  else
    if left > lease then redis.call('PEXPIRE', KEYS[1], lease) end
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', lease)
return 1
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class LockScripts(NamedTuple):
    """LeasedLock's scripts, registered once per link (a call sends only the script's digest)."""

    take: Any
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

    def __init__(
        self, settings: RedisSettings, metrics: Metrics | None = None, release: str | None = None
    ) -> None:
        """`release`: the tag of this release's data keys (default: app/fleet/keys.release())."""
        self.settings = settings
        self.metrics = metrics
        self.release = release or keys.release()
        self.replica_id = uuid.uuid4().hex
        self.client = _client(settings)
        self.state: Literal["up", "down"] = "up"
        self.replicas_seen: int | None = None  # None: never heard (then a replica uses the whole budget)
        self._heartbeat = self.client.register_script(_HEARTBEAT)
        self.lock_scripts = LockScripts(
            *(self.client.register_script(script) for script in (_TAKE_LOCK, _RELEASE_LOCK, _RENEW_LOCK))
        )
        self._calls = asyncio.Semaphore(MAX_CALLS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconnecting: asyncio.Task[None] | None = None
        self.recovered = asyncio.Event()  # set each time the circuit closes again

    @property
    def up(self) -> bool:
        return self.state == "up"

    def key(self, *parts: str) -> str:
        """A coordination key of this deployment, the same for every release: the prefix, the
        format version, then `parts`."""
        return self.settings.prefix + ":".join((keys.FORMAT, *parts))

    def data_key(self, tenant: str, kind: str, value_type: Any, key: Hashable) -> str:
        """A key of data this release computed, tenant-scoped:
        `<prefix><format>:<release>:<tenant>:<kind>:<type tag>:<digest of the key>`."""
        parts = (self.release, tenant or "_", kind, keys.schema_tag(value_type), keys.key_digest(key))
        return self.key(*parts)

    async def run(self, call: Callable[[aioredis.Redis], Awaitable[T]], timeout: float = CALL_TIMEOUT) -> T:
        """One call (or pipeline) to Redis within `timeout`; SharedUnavailable, and the circuit
        open, when it fails."""
        if not self.up:
            raise SharedUnavailable("redis is down")
        sent = False
        try:
            async with asyncio.timeout(timeout), self._calls:
                sent = True
                return await call(self.client)
        except ResponseError as error:  # WRONGTYPE, a script that failed: the data, not the server
            log.warning("redis_value_unreadable", error=str(error).split("\n")[0][:120])
            if self.metrics is not None:
                self.metrics.shared_cache.labels(result="unreadable").inc()
                self.metrics.redis_errors.labels(kind=type(error).__name__).inc()
            raise SharedUnreadable("redis: unreadable value") from None
        except (RedisError, OSError, TimeoutError) as error:
            if not sent:  # its time ran out behind this replica's own calls: busy, not down
                raise SharedUnavailable("redis: this replica's calls are queued") from None
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
                    args=[self.replica_id, HEARTBEAT_TTL_MS, CLOCK_SKEW_MS],
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
    """One replica at a time: a key set with a lease, renewed while held, released only by its
    holder, lapsing LOCK_LEASE_MS after a holder died. A key of that name of another type, without
    a lease, or with one far longer than LOCK_LEASE_MS, was not written by this service (it would
    hold the fleet off): it is taken away."""

    def __init__(self, link: RedisLink, name: str) -> None:
        self.link = link
        self.name = name
        self.token = uuid.uuid4().hex
        self.held = False
        self._renewing: asyncio.Task[None] | None = None

    async def take(self) -> bool:
        """Whether it is now held by this replica (SharedUnavailable without Redis)."""
        take = self.link.lock_scripts.take
        args = [self.token, LOCK_LEASE_MS, CLOCK_SKEW_MS]
        if int(await self.link.run(lambda client: take(keys=[self.name], args=args, client=client))):
            self.held = True
            self._renewing = asyncio.create_task(self._keep(), context=contextvars.Context())
        return self.held

    async def wait(
        self, give_up_at: float, done: Callable[[], Awaitable[T | None]] | None = None
    ) -> T | None:
        """Take the lock, waiting while another replica holds it, until `give_up_at` (loop time).
        `done` looks for the work the lock guards (another replica's answer): what it finds is
        returned at once, also right after taking the lock (the holder may have finished between
        the last look and its release). None: this replica does the work, holding the lock, or
        alone once `give_up_at` has passed (whoever holds it has held it too long)."""
        loop = asyncio.get_running_loop()
        polls = iter(WAIT_POLL_S)
        while True:
            if await self.take():
                return None if done is None else await done()
            if loop.time() >= give_up_at:
                log.warning("shared_lock_waited_too_long", lock=self.name.rsplit(":", 2)[-2][:8])
                return None
            await asyncio.sleep(min(next(polls, WAIT_POLL_S[-1]), max(0.0, give_up_at - loop.time())))
            if done is not None and (found := await done()) is not None:
                return found

    async def release(self) -> None:
        """Give it back, if held (the renewal stops either way)."""
        if self._renewing is not None:
            self._renewing.cancel()
        if not self.held:
            return
        self.held = False
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


async def get_with_ttl(client: aioredis.Redis, names: Sequence[str]) -> list[tuple[Any, int]]:
    """Each key's value and its time left in ms (-2: gone, -1: no TTL), in one round trip."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.get(name)
        pipe.pttl(name)
    answers = await pipe.execute()
    return [(data, int(ttl_ms)) for data, ttl_ms in zip(answers[0::2], answers[1::2], strict=True)]
