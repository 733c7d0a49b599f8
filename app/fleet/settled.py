"""Settled days kept for the whole fleet in Redis (app/core/settled.py says what they are).

One hash per scope (tenant, app, trigger source, zone), under a key with a TTL of SETTLED_TTL_S
that every write and validation renews: a scope nobody asks for vanishes on its own, and a
restarted or new replica finds every settled day the fleet read, with no statement.
Fields: `c` the ledger's `checked_s`; `p:<day>:<measure>` a measure's points of a day (MessagePack,
decoded with their type); `h:<day>` the day's hint as two integers. Keeping and validating are
Lua scripts, so a keep that raced a validation is refused as it is in one process, and a
validation another replica already applied is not applied twice. A field no replica wrote (an
unreadable value, a ledger that is not a number, a key of another type) means the day is not
kept: it is read again, never an error. While Redis is down, this replica keeps its own
(LocalSettledDays) and validates them itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import msgspec
import structlog

from app.core.settled import Hint, Kept, LocalSettledDays, SettledScope
from app.fleet.link import LeasedLock, RedisLink, SharedUnavailable

log = structlog.get_logger("dify_stats.fleet_settled")

SETTLED_TTL_S = 7 * 86_400  # an unused scope's settled days are forgotten after a week

# KEYS: the scope's hash. ARGV: as_of_s, ttl ms, then field, value pairs (points), then '|', then
# day, from_us, last_written_s triples (hints). Answers 1 when kept, 0 when a validation ran since.
_KEEP = """
local c = nil
if redis.call('TYPE', KEYS[1]).ok == 'hash' then c = tonumber(redis.call('HGET', KEYS[1], 'c')) end
if c == nil then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'c', ARGV[1])
elseif tonumber(ARGV[1]) < c then
  return 0
end
local i = 3
while ARGV[i] ~= '|' do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
i = i + 1
while ARGV[i] do
  local field = 'h:' .. ARGV[i]
  local kept = redis.call('HGET', KEYS[1], field)
  local kept_from = kept and tonumber(string.match(kept, '^(%-?%d+) '))
  if not kept_from or tonumber(ARGV[i + 1]) < kept_from then
    redis.call('HSET', KEYS[1], field, ARGV[i + 1] .. ' ' .. ARGV[i + 2])
  end
  i = i + 3
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: the scope's hash. ARGV: checked_s as read, the validation's start, ttl ms, 'all' or
# 'days', then the changed day numbers. Answers 1 when applied.
_VALIDATED = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
if redis.call('HGET', KEYS[1], 'c') ~= ARGV[1] then return 0 end
if ARGV[4] == 'all' then
  redis.call('DEL', KEYS[1])
else
  local changed = {}
  for i = 5, #ARGV do changed[ARGV[i]] = true end
  if #ARGV >= 5 then
    for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
      local day = string.match(field, '^[ph]:(%-?%d+)')
      if day and changed[day] then redis.call('HDEL', KEYS[1], field) end
    end
  end
end
redis.call('HSET', KEYS[1], 'c', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


class FleetSettledDays:
    def __init__(self, link: RedisLink, alone: LocalSettledDays, wait_max_s: float) -> None:
        """`alone`: what this replica keeps while Redis is down; `wait_max_s`: the longest to wait
        for another replica's validation before validating alone."""
        self.link = link
        self.alone = alone
        self.wait_max_s = wait_max_s
        self._keep = link.client.register_script(_KEEP)
        self._validated = link.client.register_script(_VALIDATED)

    def _key(self, scope: SettledScope) -> str:
        return self.link.data_key(scope.tenant_id, "s", Hint, scope)

    async def read(self, scope: SettledScope, measure: str, days: Sequence[int], point_type: Any) -> Kept:
        fields = ["c", *(f"p:{day}:{measure}" for day in days), *(f"h:{day}" for day in days)]
        key = self._key(scope)
        try:
            values = await self.link.run(lambda client: client.hmget(key, fields))
        except SharedUnavailable:
            return await self.alone.read(scope, measure, days, point_type)
        checked = _number(values[0])
        if checked is None:
            return Kept(None, {}, {})
        points: dict[int, tuple[Any, ...]] = {}
        hints: dict[int, Hint] = {}
        for day, data in zip(days, values[1 : 1 + len(days)], strict=True):
            if isinstance(data, bytes):
                try:
                    points[day] = msgspec.msgpack.decode(data, type=point_type)
                except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                    log.warning("shared_settled_day_unreadable", day=day)
        for day, data in zip(days, values[1 + len(days) :], strict=True):
            hint = _hint(data)
            if hint is not None:
                hints[day] = hint
        return Kept(checked, points, hints)

    async def keep(
        self,
        scope: SettledScope,
        measure: str,
        points: dict[int, tuple[Any, ...]],
        hints: dict[int, Hint],
        as_of_s: float,
        point_type: Any,
    ) -> bool:
        args: list[Any] = [repr(as_of_s), SETTLED_TTL_S * 1000]
        for day, value in points.items():
            args += [f"p:{day}:{measure}", msgspec.msgpack.encode(value)]
        args.append("|")
        for day, hint in hints.items():
            args += [day, hint.from_us, hint.last_written_s]
        key = self._key(scope)
        try:
            kept = await self.link.run(lambda client: self._keep(keys=[key], args=args, client=client))
        except SharedUnavailable:
            return await self.alone.keep(scope, measure, points, hints, as_of_s, point_type)
        return bool(int(kept))

    async def validated(
        self, scope: SettledScope, checked_s: float, changed: frozenset[int] | None, now_s: float
    ) -> None:
        which = ["all"] if changed is None else ["days", *sorted(changed)]
        args: list[Any] = [repr(checked_s), repr(now_s), SETTLED_TTL_S * 1000, *which]
        key = self._key(scope)
        try:
            await self.link.run(lambda client: self._validated(keys=[key], args=args, client=client))
        except SharedUnavailable:
            await self.alone.validated(scope, checked_s, changed, now_s)

    @asynccontextmanager
    async def validating(self, scope: SettledScope) -> AsyncIterator[None]:
        """One replica validates a scope at a time; the others wait for it (then find it done),
        at most `wait_max_s`; without Redis, this replica's own lock."""
        if not self.link.up:
            async with self.alone.validating(scope):
                yield
            return
        lock = LeasedLock(self.link, self._key(scope) + ":validating")
        try:
            with suppress(SharedUnavailable):  # validate without the fleet: at worst twice, never wrongly
                await lock.wait(asyncio.get_running_loop().time() + self.wait_max_s)
            yield
        finally:
            await lock.release()


def _number(data: Any) -> float | None:
    try:
        value = float(data)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) < 1e12 else None  # NaN and the absurd: not a ledger


def _hint(data: Any) -> Hint | None:
    if not isinstance(data, bytes) or len(data) > 64:
        return None
    parts = data.split(b" ")
    if len(parts) != 2 or not all(part.lstrip(b"-").isdigit() for part in parts):
        return None
    return Hint(int(parts[0]), int(parts[1]))
