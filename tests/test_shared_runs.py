"""Kept runs shared through a real Redis (app/fleet/kept_runs.py): a refresh is recorded only on
top of the record it was read from, and replaying a large whole read leaves the serving loop free.
Each replica is a SharedRuns on a Redis connection of its own, as separate processes have."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.config import RedisSettings
from app.core.kept_runs import KeptRuns
from app.fleet.kept_runs import SharedRuns
from app.fleet.link import RedisLink
from queries.rows import RunStateRow
from tests.test_run_states import _key

TENANT = "0a000000-0000-4000-8000-00000000000a"
SCOPE = ("runs", "app", "app-run", "UTC")
DAY = 20_150
WHOLE_DAY_US = (DAY * 86_400 * 1_000_000, (DAY + 1) * 86_400 * 1_000_000)


@asynccontextmanager
async def replicas(url: str, count: int, max_rows: int = 1_000) -> AsyncIterator[list[SharedRuns]]:
    settings = RedisSettings(url=url, prefix=f"runs-{uuid.uuid4().hex}:")  # one deployment per test
    links = [RedisLink(settings) for _ in range(count)]
    try:
        yield [SharedRuns(link, max_rows) for link in links]
    finally:
        for link in links:
            await link.close()


def _runs(*names: str) -> list[RunStateRow]:
    return [
        RunStateRow(id=name, day=DAY, created_us=WHOLE_DAY_US[0] + n, created_by=name, latest_key=_key(1))
        for n, name in enumerate(names)
    ]


def _read(state: KeptRuns, rows: list[RunStateRow], at_s: float) -> list[RunStateRow]:
    """A refresh as app/core/service.py reads one: merged, then dated."""
    changed = state.merge(rows)
    state.read_at_s = at_s
    return changed


def _runs_held(state: KeptRuns) -> int:
    return sum(row.runs for row in state.rows(*WHOLE_DAY_US))


def test_two_replicas_refreshing_one_record_never_hide_a_refresh_from_a_third(redis_url: str) -> None:
    """W1 and W2 hold the same record (generation, no refresh yet) and both read the store (the
    lock's wait ran out). W1's refresh is recorded; W2's, read from the same record, is not: the
    fleet's record never claims a read whose rows it lacks, so neither R (caught up on W1's) nor N
    (new, replaying the record) skips W2's runs: each holds them, or its last read is W1's (and
    its next refresh reads them)."""

    async def scenario() -> list[tuple[float | None, int]]:
        async with replicas(redis_url, 4) as (w1, w2, r, n):
            first = KeptRuns(*WHOLE_DAY_US, built_at_s=100.0)
            await w1.record_whole(TENANT, SCOPE, first, _read(first, _runs("r0"), 100.0))
            one = await w1.catch_up(TENANT, SCOPE, None)
            two = await w2.catch_up(TENANT, SCOPE, None)
            third = await r.catch_up(TENANT, SCOPE, None)
            assert one is not None and two is not None and third is not None
            await w1.record_refresh(TENANT, SCOPE, one, _read(one, _runs("r0", "a1"), 110.0))
            third = await r.catch_up(TENANT, SCOPE, third)
            assert third is not None and (third.read_at_s, _runs_held(third)) == (110.0, 2)
            await w2.record_refresh(TENANT, SCOPE, two, _read(two, _runs("r0", "b1", "b2"), 120.0))
            third = await r.catch_up(TENANT, SCOPE, third)
            fourth = await n.catch_up(TENANT, SCOPE, None)
            two = await w2.catch_up(TENANT, SCOPE, two)  # W2 learns of W1's refresh too
            assert third is not None and fourth is not None and two is not None
            return [(state.read_at_s, _runs_held(state)) for state in (third, fourth, two)]

    third, fourth, two = asyncio.run(scenario())
    for state in (third, fourth):  # as of W1's read, or holding W2's runs too
        assert state in ((110.0, 2), (120.0, 4)), state
    assert two == (120.0, 4)


def test_replaying_a_large_whole_read_leaves_the_serving_loop_free(redis_url: str) -> None:
    """A new replica replays the fleet's whole read of 60,000 runs (~13 MB): meanwhile the loop
    goes on serving, never stalled for more than a small part of the replay (decoding and merging
    it on the loop stalled it for all of it)."""
    count = 60_000

    async def scenario() -> tuple[float, float, int]:
        async with replicas(redis_url, 2, max_rows=count) as (writer, newcomer):
            state = KeptRuns(*WHOLE_DAY_US, built_at_s=100.0)
            rows = _runs(*(f"{n:036d}" for n in range(count)))
            await writer.record_whole(TENANT, SCOPE, state, _read(state, rows, 100.0))
            stalls: list[float] = []
            done = asyncio.Event()

            async def ticking() -> None:
                last = time.perf_counter()
                while not done.is_set():
                    await asyncio.sleep(0.001)
                    now = time.perf_counter()
                    stalls.append(now - last)
                    last = now

            ticker = asyncio.create_task(ticking())
            await asyncio.sleep(0.01)
            started = time.perf_counter()
            replayed = await newcomer.catch_up(TENANT, SCOPE, None)
            took = time.perf_counter() - started
            done.set()
            await ticker
            assert replayed is not None
            return took, max(stalls), _runs_held(replayed)

    took, stalled, held = asyncio.run(scenario())
    assert held == count
    assert stalled < took / 4, (stalled, took)
