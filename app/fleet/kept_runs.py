"""The runs kept for live days (app/core/kept_runs.py), shared by every replica through Redis.

A state is what its reads merged: one whole read, then refreshes of the versions written since.
Merging is a maximum in one complete order, so replaying the same reads anywhere gives the same
state. The fleet therefore keeps, per state, the rows of its whole read (a *generation*), the rows
each later refresh changed (a list, one entry per refresh), and a small meta record (range, when it
was built and last read, generation, how many refreshes). A replica catches up by applying only
the refreshes it has not seen; a new replica replays the generation. Only one replica of the
fleet reads the store for a state at a time (a lock with a lease, renewed while it reads); the
others wait for it, then catch up: a dashboard's refresh costs the versions written since the last
one, once for the fleet.

A refresh is recorded only on top of the record it was read from (same generation, as many
refreshes as its reader had seen: one script checks both), so two replicas that read the same
state at once (after the lock's wait ran out, or a circuit flap) never leave a record whose count
of refreshes hides one of them; the second is not recorded, and the fleet reads those versions
again at its next refresh.

Replaying a generation (up to STATS_LIVE_RUNS_MAX runs: tens of MB) runs in a worker thread, on
chunks of GEN_CHUNK_ROWS rows, so the serving loop is never blocked for its length.

Keys (tenant-scoped, with a TTL of two whole-read periods): `<data key>:meta` (a hash),
`...:gen:<generation>` (a list of chunks) and `...:refreshes:<generation>` (a list). Every value
is decoded with its type; an unreadable one (or one larger than a tenant's kept runs can be) means
the state is read from the store again, never an error.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import msgspec
import structlog

from app.core.kept_runs import KeptRuns
from app.fleet.answers import WAIT_MAX_S
from app.fleet.link import LUA_PRELUDE, LeasedLock, RedisLink, SharedUnavailable, SharedUnreadable
from queries.rows import RunStateRow

log = structlog.get_logger("dify_stats.shared_runs")

KEY_TTL_MS = 2 * 3_600 * 1000  # two whole-read periods (app/core/live.py FULL_READ_EVERY_S)
# A kept run is 210-220 bytes as MessagePack (two UUIDs, its key, field names). A whole read
# larger than this per run a tenant may keep, or refreshes larger than REFRESHES_PER_RUN times
# that, were not written by a replica and are not decoded.
MAX_ROW_BYTES = 512
REFRESHES_PER_RUN = 4  # a run changes a few times an hour at most (running, paused, finished)
GEN_CHUNK_ROWS = 2_000  # rows per chunk of a whole read (~430 kB: one decode holds the GIL ~1 ms)
# Refreshes up to this size are applied on the serving loop (a refresh holds the versions of one
# refresh period); larger ones are replayed with their generation, in a worker thread.
ON_LOOP_MAX_BYTES = 256 * 1024
# What replaying a record can raise on values no replica wrote: undecodable, of another type, too
# deep, or well typed with a key that does not parse (app/core/kept_runs.kept_run).
_UNREADABLE = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    ValueError,
    TypeError,
    IndexError,
    RecursionError,
)

# KEYS: meta, refreshes, generation. ARGV: generation, refreshes seen before this one, its rows,
# read_at_s, ttl ms. 1: recorded; 0: the fleet's record is not the one this refresh was read from.
_RECORD_REFRESH = (
    LUA_PRELUDE
    + """
repair(KEYS[1], 'hash')
repair(KEYS[2], 'list')
local before = tonumber(ARGV[2])
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[1]
   or tonumber(redis.call('HGET', KEYS[1], 'refreshes')) ~= before
   or redis.call('LLEN', KEYS[2]) ~= before
   or redis.call('TYPE', KEYS[3]).ok ~= 'list' then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'refreshes', before + 1, 'read_at_s', ARGV[4])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[5]) end
return 1
"""
)


class StateMeta(msgspec.Struct, frozen=True):
    generation: str
    since_us: int
    built_at_s: float
    read_at_s: float
    refreshes: int
    until_us: int | None = None


_ROWS = list[RunStateRow]


def _meta_fields(state: KeptRuns) -> dict[str, str]:
    assert state.generation is not None and state.read_at_s is not None
    fields = {
        "generation": state.generation,
        "since_us": str(state.since_us),
        "built_at_s": repr(state.built_at_s),
        "read_at_s": repr(state.read_at_s),
        "refreshes": str(state.seq),
    }
    if state.until_us is not None:
        fields["until_us"] = str(state.until_us)
    return fields


def _replayed(meta: StateMeta, chunks: Sequence[bytes], refreshes: Sequence[bytes]) -> KeptRuns | None:
    """The fleet's state rebuilt from its records (in a worker thread); None when a record does
    not decode."""
    state = KeptRuns(meta.since_us, meta.until_us, built_at_s=meta.built_at_s)
    try:
        for record in (*chunks, *refreshes):
            state.merge(msgspec.msgpack.decode(record, type=_ROWS))
    except _UNREADABLE as error:
        log.warning("shared_kept_runs_unreadable", reason=type(error).__name__)
        return None
    state.generation, state.seq, state.read_at_s = meta.generation, meta.refreshes, meta.read_at_s
    return state


class SharedRuns:
    def __init__(self, link: RedisLink, max_rows: int, wait_max_s: float = WAIT_MAX_S) -> None:
        """`max_rows`: the most runs one tenant may keep (its share of STATS_LIVE_RUNS_MAX);
        `wait_max_s`: the longest to wait for another replica's read before reading alone."""
        self.link = link
        self.max_bytes = max(1, max_rows) * MAX_ROW_BYTES
        self.wait_max_s = wait_max_s
        self._record_refresh = link.client.register_script(_RECORD_REFRESH)

    def _base(self, tenant: str, key: Hashable) -> str:
        return self.link.data_key(tenant, "k", _ROWS, key)

    async def catch_up(self, tenant: str, key: Hashable, state: KeptRuns | None) -> KeptRuns | None:
        """The state as far as the fleet has read it: `state` with the refreshes it has not seen,
        or the fleet's own (replayed) when `state` is of another whole read and older; `state`
        itself while Redis is down."""
        try:
            return await self._catch_up(tenant, key, state)
        except SharedUnavailable:
            return state

    async def _catch_up(self, tenant: str, key: Hashable, state: KeptRuns | None) -> KeptRuns | None:
        base = self._base(tenant, key)
        meta = await self._meta(base)
        if meta is None:
            return state
        refreshes_key = f"{base}:refreshes:{meta.generation}"
        if state is not None and state.generation == meta.generation:
            if state.seq >= meta.refreshes:
                return state
            first, last = state.seq, meta.refreshes - 1
            refreshes: list[Any] = await self.link.run(lambda redis: redis.lrange(refreshes_key, first, last))
            if len(refreshes) != meta.refreshes - first:
                return state  # the fleet's record is incomplete: this replica reads the store
            if sum(map(len, refreshes)) <= ON_LOOP_MAX_BYTES:
                try:
                    for refresh in refreshes:
                        state.merge(msgspec.msgpack.decode(refresh, type=_ROWS))
                except _UNREADABLE as error:  # the state (perhaps half merged) is read again
                    log.warning("shared_kept_runs_unreadable", reason=type(error).__name__)
                    return None
                # Both this state and the fleet's record hold every version written up to their
                # last read (less the slack): merged, the later of the two.
                state.seq, state.read_at_s = meta.refreshes, max(state.read_at_s or 0.0, meta.read_at_s)
                return state
        elif state is not None and state.read_at_s is not None and state.read_at_s >= meta.read_at_s:
            return state  # this replica's is as new (e.g. read while Redis was away)

        async def fetch(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.lrange(f"{base}:gen:{meta.generation}", 0, -1)
            pipe.lrange(refreshes_key, 0, meta.refreshes - 1)
            return await pipe.execute()  # type: ignore[no-any-return]

        chunks, refreshes = await self.link.run(fetch)
        if not chunks:
            return state  # the whole read is gone (expired, evicted)
        if (
            sum(map(len, chunks)) > self.max_bytes
            or sum(map(len, refreshes)) > REFRESHES_PER_RUN * self.max_bytes
        ):
            log.warning("shared_kept_runs_not_replayed", reason="larger than a tenant may keep")
            return None if state is None or state.generation != meta.generation else state
        if len(refreshes) != meta.refreshes:
            return None  # the fleet's record is incomplete: read again
        return await asyncio.to_thread(_replayed, meta, chunks, refreshes)

    async def _meta(self, base: str) -> StateMeta | None:
        """The fleet's meta record of a state, or None (none, or none a replica wrote: removed)."""
        name = f"{base}:meta"

        async def read(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(name)
            pipe.pttl(name)
            return await pipe.execute()  # type: ignore[no-any-return]

        try:
            fields, ttl_ms = await self.link.run(read)
        except SharedUnreadable:  # of another type
            fields, ttl_ms = {}, -1
        if not fields:
            return None
        try:
            if int(ttl_ms) < 0:
                raise msgspec.ValidationError("no TTL")
            text = {bytes(name).decode(): bytes(value).decode() for name, value in fields.items()}
            return msgspec.convert(text, StateMeta, strict=False)
        except (*_UNREADABLE, UnicodeDecodeError):
            log.warning("shared_kept_runs_unreadable", reason="meta")
            with suppress(SharedUnavailable):
                await self.link.run(lambda client: client.delete(name))
            return None

    async def record_whole(
        self, tenant: str, key: Hashable, state: KeptRuns, rows: list[RunStateRow]
    ) -> None:
        """A whole read: a new generation, with no refreshes yet."""
        base = self._base(tenant, key)
        state.generation, state.seq = uuid.uuid4().hex, 0
        fields = _meta_fields(state)
        chunks = [
            msgspec.msgpack.encode(rows[start : start + GEN_CHUNK_ROWS])
            for start in range(0, max(1, len(rows)), GEN_CHUNK_ROWS)
        ]

        async def write(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.rpush(f"{base}:gen:{state.generation}", *chunks)
            pipe.pexpire(f"{base}:gen:{state.generation}", KEY_TTL_MS)
            pipe.delete(f"{base}:meta")
            pipe.hset(f"{base}:meta", mapping=fields)
            pipe.pexpire(f"{base}:meta", KEY_TTL_MS)
            await pipe.execute()

        with suppress(SharedUnavailable):  # unrecorded, the others read the store themselves
            await self.link.run(write)

    async def record_refresh(
        self, tenant: str, key: Hashable, state: KeptRuns, changed: list[RunStateRow]
    ) -> None:
        """A refresh: the rows that changed the state, after the generation's earlier ones, if
        the fleet's record is still the one the state was read from."""
        if state.generation is None:
            return  # a state the fleet does not know (read while Redis was away): not shared
        base = self._base(tenant, key)
        generation = state.generation
        names = [f"{base}:meta", f"{base}:refreshes:{generation}", f"{base}:gen:{generation}"]
        rows = msgspec.msgpack.encode(changed)
        args: list[str | int | bytes] = [generation, state.seq, rows, repr(state.read_at_s), KEY_TTL_MS]
        record = self._record_refresh
        try:
            recorded = int(await self.link.run(lambda client: record(keys=names, args=args, client=client)))
        except SharedUnavailable:
            return  # unrecorded, the others read the store themselves
        if recorded:
            state.seq += 1
        else:
            log.info("kept_runs_refresh_not_recorded", reason="another replica recorded a read meanwhile")

    @asynccontextmanager
    async def reading(self, tenant: str, key: Hashable) -> AsyncIterator[None]:
        """The fleet's lock on reading the store for this state: waited for while another replica
        holds it (or until its lease lapses, if it died), at most `wait_max_s`; without Redis,
        or after that, not taken."""
        lock = LeasedLock(self.link, self._base(tenant, key) + ":lock")
        try:
            with suppress(SharedUnavailable):  # read alone, as without Redis
                await lock.wait(asyncio.get_running_loop().time() + self.wait_max_s)
            yield
        finally:
            await lock.release()
