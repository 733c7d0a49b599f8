"""The query budget shared by every replica through Redis: STATS_POOL_SIZE statements at once
across the fleet (app/stores/budget.py says why, and what one replica alone does)."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import structlog

from app.fleet.link import CALL_TIMEOUT, FORGED_AHEAD_MS, RedisLink, SharedUnavailable
from app.metrics import Metrics
from app.stores.budget import LocalBudget

log = structlog.get_logger("dify_stats.budget")

LEASE_MS = 10_000  # a dead holder's slot is reused within this
RENEW_EVERY_S = 3.0
WAITER_TTL_MS = 3_000  # a waiter that stopped asking (its replica died) leaves the queue
POLL_S = 0.25  # waiters re-ask at least this often
KEY_TTL_MS = 120_000  # an idle budget's keys vanish

# KEYS: slots, queue, alive, ticket. ARGV: me ("tenant|id"), limit, tenant limit, lease ms,
# waiter ttl ms, key ttl ms, forged-ahead margin ms. Answers {granted (0/1), slots held after}.
_ACQUIRE = """
for i = 1, 3 do  -- a key holding anything else (written by another program) is started afresh
  if redis.call('TYPE', KEYS[i]).ok ~= 'zset' then redis.call('DEL', KEYS[i]) end
end
if redis.call('TYPE', KEYS[4]).ok ~= 'string' or not tonumber(redis.call('GET', KEYS[4])) then
  redis.call('DEL', KEYS[4])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, limit, tenant_limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
-- Leases and waiters past their time are gone; any dated further ahead than this service ever
-- dates one (ARGV[7]: margin) were written by someone else, and would hold slots for ever.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. (now + tonumber(ARGV[4]) + tonumber(ARGV[7])), '+inf')
redis.call('ZREMRANGEBYSCORE', KEYS[3], '(' .. (now + tonumber(ARGV[5]) + tonumber(ARGV[7])), '+inf')
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('ZREM', KEYS[2], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
for _, waiter in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do  -- a waiter must be alive
  if waiter ~= me and not redis.call('ZSCORE', KEYS[3], waiter) then redis.call('ZREM', KEYS[2], waiter) end
end
if not redis.call('ZSCORE', KEYS[2], me) then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), me)
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), me)
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[6])) end
local held = redis.call('ZRANGE', KEYS[1], 0, -1)
local free = limit - #held
if free <= 0 then return {0, #held} end
local function tenant_of(member) return string.match(member, '^([^|]*)|') or '' end
local per_tenant = {}
for _, slot in ipairs(held) do
  local tenant = tenant_of(slot)
  per_tenant[tenant] = (per_tenant[tenant] or 0) + 1
end
for _, waiter in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local tenant = tenant_of(waiter)
  local holding = per_tenant[tenant] or 0
  if tenant == '' or holding < tenant_limit then
    if waiter == me then
      redis.call('ZREM', KEYS[2], me)
      redis.call('ZREM', KEYS[3], me)
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), me)
      return {1, #held + 1}
    end
    free = free - 1
    if free <= 0 then return {0, #held} end
    per_tenant[tenant] = holding + 1
  end
end
return {0, #held}
"""

# KEYS: slots. ARGV: me, lease ms. Answers 1 when the lease was still held (and is extended).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  return 1
end
return 0
"""

# KEYS: slots, queue, alive. ARGV: me, channel. A slot given back, or a wait given up.
_RELEASE = """
local held = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if held == 1 then redis.call('PUBLISH', ARGV[2], '1') end
return held
"""


class FleetBudget:
    """STATS_POOL_SIZE statements at once across every replica sharing the Redis."""

    def __init__(
        self, link: RedisLink, identity: str, size: int, tenant_share: float, metrics: Metrics | None = None
    ) -> None:
        self.link = link
        self.size = size
        self.tenant_share = tenant_share
        self.tenant_limit = max(1, int(size * tenant_share))
        self.metrics = metrics
        tag = "{budget:" + identity + "}"  # one hash slot for the script's keys (Redis Cluster)
        self._keys = [link.key(tag, part) for part in ("slots", "queue", "alive", "ticket")]
        self.channel = link.key(tag, "freed")
        self._acquire_script = link.client.register_script(_ACQUIRE)
        self._renew_script = link.client.register_script(_RENEW)
        self._release_script = link.client.register_script(_RELEASE)
        self._freed = asyncio.Event()
        self._local: LocalBudget | None = None
        self._listener: asyncio.Task[None] | None = None
        self.in_use = 0  # slots held fleet-wide, as of the last answer
        self._closed = False

    @asynccontextmanager
    async def hold(self, tenant: str | None) -> AsyncIterator[None]:
        slot = await self._acquire(tenant or "") if self.link.up else None
        if slot is None:
            async with self._local_share().hold(tenant):
                yield
            return
        renewing = asyncio.create_task(self._renew(slot), context=contextvars.Context())
        try:
            yield
        finally:
            renewing.cancel()
            await asyncio.shield(self._release(slot))

    def start(self) -> None:
        """Listen for freed slots (waiters are woken at once instead of at their next poll)."""
        self._listener = asyncio.create_task(self._listen(), context=contextvars.Context())

    async def close(self) -> None:
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            # redis-py may swallow a cancellation that lands while it connects: the flag ends the
            # loop then, and the wait is bounded either way.
            await asyncio.wait({self._listener}, timeout=2 * CALL_TIMEOUT)

    def _local_share(self) -> LocalBudget:
        """STATS_POOL_SIZE / replicas last seen, at least one; re-made when that count changes."""
        size = max(1, self.size // max(1, self.link.replicas_seen or 1))
        if self._local is None or self._local.size != size:
            self._local = LocalBudget(size, self.tenant_share)
            log.info("local_budget_share", statements=size, replicas_seen=self.link.replicas_seen)
        return self._local

    async def _acquire(self, tenant: str) -> str | None:
        """A slot's member, waited for in the fleet's queue; None when Redis fails (then the
        local share decides)."""
        me = f"{tenant}|{uuid.uuid4().hex}"
        args: list[str | int] = [
            me, self.size, self.tenant_limit, LEASE_MS, WAITER_TTL_MS, KEY_TTL_MS, FORGED_AHEAD_MS
        ]  # fmt: skip
        started = asyncio.get_running_loop().time()
        try:
            while True:
                freed = self._freed
                granted, held = await self.link.run(
                    lambda client: self._acquire_script(keys=self._keys, args=args, client=client)
                )
                self._saw(int(held))
                if int(granted):
                    return me
                with suppress(TimeoutError):
                    async with asyncio.timeout(POLL_S):
                        await freed.wait()
        except SharedUnavailable:
            return None
        except BaseException:
            await asyncio.shield(self._release(me))  # leave the queue (or give back a late grant)
            waited = asyncio.get_running_loop().time() - started
            if waited >= 1:  # the statement's time ran out in the queue: say why it failed
                log.warning("fleet_slot_not_granted", waited_s=round(waited, 1), slots_held=self.in_use)
            raise

    async def _renew(self, slot: str) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            try:
                still = await self.link.run(
                    lambda client: self._renew_script(
                        keys=self._keys[:1], args=[slot, LEASE_MS], client=client
                    )
                )
            except SharedUnavailable:
                continue  # the lease may lapse; the statement goes on (Redis is down for everyone)
            if not int(still):
                log.warning("budget_lease_lost", hint="a statement outlived its slot's lease")
                return

    async def _release(self, slot: str) -> None:
        self._wake()
        with suppress(SharedUnavailable):
            await self.link.run(
                lambda client: self._release_script(
                    keys=self._keys[:3], args=[slot, self.channel], client=client
                )
            )

    def _wake(self) -> None:
        freed, self._freed = self._freed, asyncio.Event()
        freed.set()

    def _saw(self, held: int) -> None:
        self.in_use = held
        if self.metrics is not None:
            self.metrics.fleet_slots.set(held)

    async def _listen(self) -> None:
        """Wake local waiters whenever any replica frees a slot; reconnects by itself."""
        while not self._closed:
            if not self.link.up:
                await self.link.recovered.wait()
            try:
                pubsub = self.link.client.pubsub()
                try:
                    await pubsub.subscribe(self.channel)
                    while not self._closed:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None:
                            self._wake()
                finally:
                    with suppress(Exception):
                        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure of the subscription: try again shortly
                log.debug("budget_listener_failed", error_type=type(error).__name__)
                await asyncio.sleep(1.0)
