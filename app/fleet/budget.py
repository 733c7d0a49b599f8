"""The query budget shared by every replica through Redis: STATS_POOL_SIZE statements at once
across the fleet (app/stores/budget.py says why, and what one replica alone does).

Four sorted sets and a counter, per store, on Redis's own clock:
- `slots`: the statements running, each a lease scored by its expiry;
- `queue`: the waiters, all at score 0, named `tenant|ticket|replica|id` with a zero-padded ticket,
  so that one lexical range finds a tenant's first waiter;
- `heads`: each waiting tenant, scored by the ticket of its first waiter;
- `alive`: each replica with waiters, scored by when it is gone if it stops asking;
- `ticket`: the counter that orders waiters across replicas.

A freed slot is given away in the script that frees it: to the first waiter, in ticket order, whose
tenant holds less than its share (so none starves, and one replica alone may use the whole budget),
skipping waiters of replicas that are gone. The grant is published; only the waiter it names
wakes. A replica with waiters asks once every POLL_S for all of them (a dead holder's lease lapses
silently: that ask gives its slot away), so the work per freed slot does not grow with the queue.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import structlog

from app.fleet.link import CALL_TIMEOUT, CLOCK_SKEW_MS, LUA_PRELUDE, RedisLink, SharedUnavailable
from app.metrics import Metrics
from app.stores.budget import LocalBudget

log = structlog.get_logger("dify_stats.budget")

LEASE_MS = 10_000  # a dead holder's slot is reused within this
RENEW_EVERY_S = 3.0
POLL_S = 1.0  # a replica with waiters asks this often for all of them
REPLICA_TTL_MS = 3_000  # a replica that stopped asking (it died) loses its waiters' places
KEY_TTL_MS = 120_000  # an idle budget's keys vanish
MAX_ASKED = 1_000  # waiters one ask looks up (the rest at the next)

# KEYS: slots, queue, heads, alive, ticket. ARGV 1-8: limit, tenant limit, lease ms, replica ttl
# ms, key ttl ms, skew ms, channel, replica; then each script's own.
_BUDGET = (
    LUA_PRELUDE
    + """
local slots, queue, heads, alive, ticket = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local limit, tenant_limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local lease, replica_ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local key_ttl, skew = tonumber(ARGV[5]), tonumber(ARGV[6])
for i = 1, 4 do repair(KEYS[i], 'zset') end
repair(ticket, 'string')
local last = redis.call('GET', ticket)
if last and not (#last <= 15 and string.match(last, '^%d+$')) then redis.call('DEL', ticket) end
fence(slots, lease, skew)
fence(alive, replica_ttl, skew)
redis.call('ZADD', alive, now + replica_ttl, ARGV[8])

local function tenant_of(member) return string.match(member, '^([^|]*)|') or '' end
local function ticket_of(member) return tonumber(string.match(member, '^[^|]*|(%d+)|') or 0) end
local function replica_of(member) return string.match(member, '^[^|]*|%d+|([^|]+)|') end
local function first_of(tenant)
  return redis.call('ZRANGEBYLEX', queue, '[' .. tenant .. '|', '(' .. tenant .. '}', 'LIMIT', 0, 1)[1]
end
local function renew_head(tenant)
  local first = first_of(tenant)
  if first then redis.call('ZADD', heads, ticket_of(first), tenant) else redis.call('ZREM', heads, tenant) end
end
local function enqueue(member)
  redis.call('ZADD', queue, 0, member)
  local tenant = tenant_of(member)
  local head = redis.call('ZSCORE', heads, tenant)
  if not head or tonumber(head) > ticket_of(member) then
    redis.call('ZADD', heads, ticket_of(member), tenant)
  end
end
-- Free slots to the first waiters, in ticket order, whose tenant holds less than its share;
-- waiters of replicas that are gone leave the queue. Published, but for `asker` (who is answered).
local function grant_free(asker)
  local held = redis.call('ZRANGE', slots, 0, -1)
  local free = limit - #held
  local granted, told = {}, {}
  if free <= 0 then return granted end
  local holding = {}
  for _, slot in ipairs(held) do holding[tenant_of(slot)] = (holding[tenant_of(slot)] or 0) + 1 end
  while free > 0 do
    local chosen = nil
    for _, tenant in ipairs(redis.call('ZRANGE', heads, 0, -1)) do
      if tenant == '' or (holding[tenant] or 0) < tenant_limit then chosen = tenant; break end
    end
    if not chosen then break end
    local first = first_of(chosen)
    if first then
      redis.call('ZREM', queue, first)
      local replica = replica_of(first)
      if replica and redis.call('ZSCORE', alive, replica) then
        redis.call('ZADD', slots, now + lease, first)
        holding[chosen] = (holding[chosen] or 0) + 1
        free = free - 1
        table.insert(granted, first)
        if first ~= asker then table.insert(told, first) end
      end
    end
    renew_head(chosen)
  end
  if #told > 0 then redis.call('PUBLISH', ARGV[7], table.concat(told, ' ')) end
  return granted
end
local function keep()
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], key_ttl) end
end
"""
)

# ARGV 9-11: tenant, id, the waiter's member ('' when it first asks). {granted, member, slots held}.
_ACQUIRE = (
    _BUDGET
    + """
local member = ARGV[11]
if member == '' then
  local number = string.format('%015d', redis.call('INCR', ticket))
  member = ARGV[9] .. '|' .. number .. '|' .. ARGV[8] .. '|' .. ARGV[10]
end
if not redis.call('ZSCORE', slots, member) then
  if not redis.call('ZSCORE', queue, member) then enqueue(member) end
  grant_free(member)
end
keep()
return {redis.call('ZSCORE', slots, member) and 1 or 0, member, redis.call('ZCARD', slots)}
"""
)

# ARGV 9-: the members waiting on this replica. {slots held, those granted, those in no queue}.
_ASK = (
    _BUDGET
    + """
grant_free('')
keep()
local granted, lost = {}, {}
if #ARGV >= 9 then
  local waiting = {unpack(ARGV, 9)}
  local in_slots = redis.call('ZMSCORE', slots, unpack(waiting))
  local in_queue = redis.call('ZMSCORE', queue, unpack(waiting))
  for i, member in ipairs(waiting) do
    if in_slots[i] then
      table.insert(granted, member)
    elseif not in_queue[i] then
      table.insert(lost, member)
    end
  end
end
return {redis.call('ZCARD', slots), granted, lost}
"""
)

# ARGV 9: a slot's member given back, or a waiter's given up. {held (0/1), slots held, granted}.
_RELEASE = (
    _BUDGET
    + """
local held = redis.call('ZREM', slots, ARGV[9])
if redis.call('ZREM', queue, ARGV[9]) == 1 then renew_head(tenant_of(ARGV[9])) end
local granted = grant_free('')
keep()
return {held, redis.call('ZCARD', slots), granted}
"""
)

# KEYS: slots. ARGV: member, lease ms, key ttl ms. A running statement's lease, extended; put back
# if it was lost (a failover, a flush): the statement runs on. 1 when it was still there.
_RENEW = (
    LUA_PRELUDE
    + """
repair(KEYS[1], 'zset')
local had = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return had and 1 or 0
"""
)

# KEYS: slots. ARGV: lease ms, skew ms. The leases running now (as the scripts count them).
_IN_USE = (
    LUA_PRELUDE
    + """
if redis.call('TYPE', KEYS[1]).ok ~= 'zset' then return 0 end
return redis.call('ZCOUNT', KEYS[1], '(' .. now, now + tonumber(ARGV[1]) + tonumber(ARGV[2]))
"""
)


class FleetBudget:
    """STATS_POOL_SIZE statements at once across every replica sharing the Redis."""

    def __init__(
        self, link: RedisLink, identity: str, size: int, tenant_share: float, metrics: Metrics | None = None
    ) -> None:
        self.link = link
        self.identity = identity
        self.size = size
        self.tenant_share = tenant_share
        self.tenant_limit = max(1, int(size * tenant_share))
        self.metrics = metrics
        parts = ("slots", "queue", "heads", "alive", "ticket")
        self._keys = [link.key("budget", identity, part) for part in parts]
        self.channel = link.key("budget", identity, "granted")
        register = link.client.register_script
        self._acquire_script, self._ask_script = register(_ACQUIRE), register(_ASK)
        self._release_script, self._renew_script = register(_RELEASE), register(_RENEW)
        self._in_use_script = register(_IN_USE)
        self._waiting: dict[str, asyncio.Future[bool]] = {}  # member -> granted (False: ask again)
        self._asking: asyncio.Task[None] | None = None
        self._local: LocalBudget | None = None
        self._listener: asyncio.Task[None] | None = None
        self.in_use = 0  # slots held fleet-wide, as of the last answer
        self.local = False  # the last statement took a local share (Redis down, or a script failed)
        self._closed = False

    @property
    def source(self) -> str:
        return self.identity.split(":", 1)[0]

    @asynccontextmanager
    async def hold(self, tenant: str | None) -> AsyncIterator[None]:
        slot = await self._acquire(tenant or "") if self.link.up else None
        self._set_local(slot is None)
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
        """Listen for grants (a waiter is woken at once instead of at the next ask), and report the
        slots in use as of each scrape."""
        self._listener = asyncio.create_task(self._listen(), context=contextvars.Context())
        if self.metrics is not None:
            self.metrics.before_scrape.append(self.report_in_use)

    async def close(self) -> None:
        self._closed = True
        tasks = {task for task in (self._listener, self._asking) if task is not None}
        for task in tasks:
            task.cancel()
        if tasks:
            # redis-py may swallow a cancellation that lands while it connects: the flag ends the
            # loops then, and the wait is bounded either way.
            await asyncio.wait(tasks, timeout=2 * CALL_TIMEOUT)

    def _set_local(self, local: bool) -> None:
        self.local = local
        if self.metrics is not None:
            self.metrics.budget_local.labels(source=self.source).set(int(local))

    def _local_share(self) -> LocalBudget:
        """STATS_POOL_SIZE / replicas last seen, at least one; re-made when that count changes."""
        size = max(1, self.size // max(1, self.link.replicas_seen or 1))
        if self._local is None or self._local.size != size:
            self._local = LocalBudget(size, self.tenant_share)
            log.info("local_budget_share", statements=size, replicas_seen=self.link.replicas_seen)
        return self._local

    async def _call(self, script: Any, *extra: str | int) -> Any:
        args = [
            self.size, self.tenant_limit, LEASE_MS, REPLICA_TTL_MS, KEY_TTL_MS, CLOCK_SKEW_MS,
            self.channel, self.link.replica_id, *extra,
        ]  # fmt: skip
        return await self.link.run(lambda client: script(keys=self._keys, args=args, client=client))

    async def _acquire(self, tenant: str) -> str | None:
        """A slot's member, waited for in the fleet's queue; None when Redis fails (then the
        local share decides)."""
        loop = asyncio.get_running_loop()
        started, member, me = loop.time(), "", uuid.uuid4().hex
        try:
            while True:
                granted, found, held = await self._call(self._acquire_script, tenant, me, member)
                member, self.in_use = found.decode() if isinstance(found, bytes) else str(found), int(held)
                if int(granted):
                    return member
                waiter = self._waiting[member] = loop.create_future()
                if self._asking is None:
                    self._asking = asyncio.create_task(self._ask(), context=contextvars.Context())
                if await waiter:
                    return member
                self._waiting.pop(member)  # it lost its place (its replica looked gone): ask again
        except SharedUnavailable:
            if member:  # leave the queue if Redis still takes that (else its place lapses unused)
                await asyncio.shield(self._release(member))
            return None
        except BaseException:
            if member:
                await asyncio.shield(self._release(member))  # leave the queue (or give back a late grant)
            waited = loop.time() - started
            if waited >= 1:  # the statement's time ran out in the queue: say why it failed
                log.warning("fleet_slot_not_granted", waited_s=round(waited, 1), slots_held=self.in_use)
            raise
        finally:
            self._waiting.pop(member, None)

    async def _ask(self) -> None:
        """While this replica has waiters: every POLL_S, one ask for all of them (it also gives
        away slots whose holders died, and keeps this replica's waiters in the queue)."""
        try:
            while self._waiting and not self._closed:
                await asyncio.sleep(POLL_S)
                members = [member for member, waiter in self._waiting.items() if not waiter.done()]
                if not members:
                    continue
                try:
                    held, granted, lost = await self._call(self._ask_script, *members[:MAX_ASKED])
                except SharedUnavailable as error:
                    for waiter in self._waiting.values():
                        if not waiter.done():
                            waiter.set_exception(SharedUnavailable(str(error)))
                    continue
                self.in_use = int(held)
                self._wake(granted)
                self._wake(lost, granted=False)
        finally:
            self._asking = None

    def _wake(self, members: list[Any], granted: bool = True) -> None:
        for member in members:
            waiter = self._waiting.get(member.decode() if isinstance(member, bytes) else member)
            if waiter is not None and not waiter.done():
                waiter.set_result(granted)

    async def _renew(self, slot: str) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            try:
                had = await self.link.run(
                    lambda client: self._renew_script(
                        keys=self._keys[:1], args=[slot, LEASE_MS, KEY_TTL_MS], client=client
                    )
                )
            except SharedUnavailable:
                continue  # the lease may lapse; the statement goes on (Redis is down for everyone)
            if not int(had):
                log.info("budget_lease_restored", hint="a running statement's lease was gone (failover?)")

    async def _release(self, slot: str) -> None:
        with suppress(SharedUnavailable):
            _, held, granted = await self._call(self._release_script, slot)
            self.in_use = int(held)
            self._wake(granted)

    async def report_in_use(self) -> None:
        """The gauge of slots in use fleet-wide, read now (NaN when Redis does not answer)."""
        if self.metrics is None:
            return
        try:
            count = await self.link.run(
                lambda client: self._in_use_script(
                    keys=self._keys[:1], args=[LEASE_MS, CLOCK_SKEW_MS], client=client
                ),
                timeout=CALL_TIMEOUT / 2,
            )
        except SharedUnavailable:
            count = float("nan")
        self.metrics.fleet_slots.labels(source=self.source).set(float(count))

    async def _listen(self) -> None:
        """Wake the local waiters a grant names; reconnects by itself."""
        while not self._closed:
            if not self.link.up:
                await self.link.recovered.wait()
            try:
                pubsub = self.link.client.pubsub()
                try:
                    await pubsub.subscribe(self.channel)
                    while not self._closed:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None and isinstance(message.get("data"), bytes):
                            self._wake(message["data"].split())
                finally:
                    with suppress(Exception):
                        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure of the subscription: try again shortly
                log.debug("budget_listener_failed", error_type=type(error).__name__)
                await asyncio.sleep(1.0)
