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

Keys (tenant-scoped, with a TTL of two whole-read periods): `<prefix>v1:<tenant>:k:<state>:meta`,
`...:gen:<generation>` and `...:refreshes:<generation>`. Every value is decoded with its type; an
unreadable one (or one larger than a tenant's kept runs can be) means the state is read from the
store again, never an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager, suppress
from typing import Any

import msgspec
import structlog

from app.core.kept_runs import KeptRuns
from app.fleet.answers import WAIT_MAX_S, schema_tag
from app.fleet.link import LeasedLock, RedisLink, SharedUnavailable
from queries.rows import RunStateRow

log = structlog.get_logger("dify_stats.shared_runs")

KEY_TTL_MS = 2 * 3_600 * 1000  # two whole-read periods (app/core/live.py FULL_READ_EVERY_S)
LOCK_POLL_S = 0.05
# A kept run is 210-220 bytes as MessagePack (two UUIDs, its key, field names). A whole read
# larger than this per run a tenant may keep, or refreshes larger than REFRESHES_PER_RUN times
# that, were not written by a replica and are not decoded (decoding blocks the serving loop for
# as long as it takes).
MAX_ROW_BYTES = 512
REFRESHES_PER_RUN = 4  # a run changes a few times an hour at most (running, paused, finished)
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


class StateMeta(msgspec.Struct, frozen=True):
    since_us: int
    until_us: int | None
    built_at_s: float
    read_at_s: float
    generation: str
    refreshes: int


_ROWS = list[RunStateRow]


class SharedRuns:
    def __init__(self, link: RedisLink, max_rows: int, wait_max_s: float = WAIT_MAX_S) -> None:
        """`max_rows`: the most runs one tenant may keep (its share of STATS_LIVE_RUNS_MAX);
        `wait_max_s`: the longest to wait for another replica's read before reading alone."""
        self.link = link
        self.max_bytes = max(1, max_rows) * MAX_ROW_BYTES
        self.wait_max_s = wait_max_s

    def _base(self, tenant: str, key: Hashable) -> str:
        digest = hashlib.sha256(msgspec.msgpack.encode(key)).hexdigest()[:32]
        return self.link.key(tenant, "k", schema_tag(_ROWS), digest)

    async def catch_up(self, tenant: str, key: Hashable, state: KeptRuns | None) -> KeptRuns | None:
        """The state as far as the fleet has read it: `state` with the refreshes it has not seen,
        or the fleet's own (replayed) when `state` is of another whole read or older; `state`
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
        if state is not None and state.read_at_s is not None and state.read_at_s >= meta.read_at_s:
            return state  # this replica's is as new (e.g. read while Redis was away)
        same = state is not None and state.generation == meta.generation
        first = state.seq if same and state is not None else 0

        async def fetch(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            if not same:  # a replica on this generation needs only the refreshes it has not seen
                pipe.get(f"{base}:gen:{meta.generation}")
            pipe.lrange(f"{base}:refreshes:{meta.generation}", first, meta.refreshes - 1)
            return await pipe.execute()  # type: ignore[no-any-return]

        *wholes, refreshes = await self.link.run(fetch)
        whole = wholes[0] if wholes else None
        if (
            len(whole or b"") > self.max_bytes
            or sum(map(len, refreshes)) > REFRESHES_PER_RUN * self.max_bytes
        ):
            log.warning("shared_kept_runs_not_replayed", reason="larger than a tenant may keep")
            return state if same else None  # this replica's own state stays good
        try:
            if not same:
                if whole is None:
                    return state
                state = KeptRuns(meta.since_us, meta.until_us, built_at_s=meta.built_at_s)
                state.merge(msgspec.msgpack.decode(whole, type=_ROWS))
            assert state is not None
            if len(refreshes) != meta.refreshes - first:
                return state if same else None  # the fleet's record is incomplete: read again
            for refresh in refreshes:
                state.merge(msgspec.msgpack.decode(refresh, type=_ROWS))
        except _UNREADABLE as error:  # the state (perhaps half merged) is read from the store again
            log.warning("shared_kept_runs_unreadable", reason=type(error).__name__)
            return None
        state.generation, state.seq, state.read_at_s = meta.generation, meta.refreshes, meta.read_at_s
        return state

    async def _meta(self, base: str) -> StateMeta | None:
        data = await self.link.run(lambda client: client.get(f"{base}:meta"))
        if not isinstance(data, bytes):
            return None
        try:
            return msgspec.msgpack.decode(data, type=StateMeta)
        except _UNREADABLE:
            log.warning("shared_kept_runs_unreadable")
            return None

    async def record_whole(
        self, tenant: str, key: Hashable, state: KeptRuns, rows: list[RunStateRow]
    ) -> None:
        """A whole read: a new generation, with no refreshes yet."""
        base = self._base(tenant, key)
        state.generation, state.seq = uuid.uuid4().hex, 0
        meta = self._meta_of(state)

        async def write(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.set(f"{base}:gen:{state.generation}", msgspec.msgpack.encode(rows), px=KEY_TTL_MS)
            pipe.set(f"{base}:meta", msgspec.msgpack.encode(meta), px=KEY_TTL_MS)
            await pipe.execute()

        with suppress(SharedUnavailable):  # unrecorded, the others read the store themselves
            await self.link.run(write)

    async def record_refresh(
        self, tenant: str, key: Hashable, state: KeptRuns, changed: list[RunStateRow]
    ) -> None:
        """A refresh: the rows that changed the state, after the generation's earlier ones."""
        if state.generation is None:
            return  # a state the fleet does not know (read while Redis was away): not shared
        base = self._base(tenant, key)
        refreshes = f"{base}:refreshes:{state.generation}"
        state.seq += 1
        meta = self._meta_of(state)

        async def write(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.rpush(refreshes, msgspec.msgpack.encode(changed))
            pipe.pexpire(refreshes, KEY_TTL_MS)
            pipe.pexpire(f"{base}:gen:{state.generation}", KEY_TTL_MS)
            pipe.set(f"{base}:meta", msgspec.msgpack.encode(meta), px=KEY_TTL_MS)
            await pipe.execute()

        with suppress(SharedUnavailable):
            await self.link.run(write)

    @staticmethod
    def _meta_of(state: KeptRuns) -> StateMeta:
        assert state.generation is not None and state.read_at_s is not None
        return StateMeta(
            since_us=state.since_us,
            until_us=state.until_us,
            built_at_s=state.built_at_s,
            read_at_s=state.read_at_s,
            generation=state.generation,
            refreshes=state.seq,
        )

    @asynccontextmanager
    async def reading(self, tenant: str, key: Hashable) -> AsyncIterator[None]:
        """The fleet's lock on reading the store for this state: waited for while another replica
        holds it (or until its lease lapses, if it died), at most `wait_max_s`; without Redis,
        or after that, not taken."""
        lock = LeasedLock(self.link, self._base(tenant, key) + ":lock")
        give_up_at = asyncio.get_running_loop().time() + self.wait_max_s
        try:
            while not await lock.try_take():
                await lock.held_elsewhere()  # a key no replica wrote is taken away
                if asyncio.get_running_loop().time() >= give_up_at:
                    log.warning("shared_lock_waited_too_long", waited_s=self.wait_max_s)
                    raise SharedUnavailable("held too long")  # read alone, as without Redis
                await asyncio.sleep(LOCK_POLL_S)
        except SharedUnavailable:
            yield
            return
        try:
            yield
        finally:
            await lock.release()
