"""The answer cache shared through a real Redis: what one replica computed is a hit on another,
identical misses on different replicas run one load, a dead loader's waiters take over, and
anything unreadable in Redis is a miss, never an error. Each replica here is an AnswerCache with a
Redis connection of its own, as separate processes have (tests/test_replicas.py runs processes)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis

import app
import queries
from app.config import RedisSettings
from app.core.cache import AnswerCache
from app.fleet.answers import SharedAnswers
from app.fleet.kept_runs import SharedRuns
from app.fleet.keys import release, schema_tag, sql_digest, sql_files
from app.fleet.link import RedisLink
from app.metrics import Metrics
from app.stores.backend import BackendUnavailable
from schemas.runs import RunCounts

TENANT = "0a000000-0000-4000-8000-00000000000a"
PREFIX = "test-cache:"


@asynccontextmanager
async def fleet(
    url: str, count: int, stale_max: float = 60, wait_max_s: float = 30
) -> AsyncIterator[list[AnswerCache]]:
    async with AsyncExitStack() as stack:
        caches = []
        for _ in range(count):
            link = RedisLink(RedisSettings(url=url, prefix=PREFIX), Metrics())
            stack.push_async_callback(link.close)
            shared = SharedAnswers(link, stale_max, link.metrics, wait_max_s)
            caches.append(AnswerCache(100, stale_max, shared=shared))
        yield caches


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())


class Loads:
    """A load that counts its calls and answers after `seconds`."""

    def __init__(self, seconds: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.seconds = seconds
        self.fail = fail

    async def __call__(self) -> RunCounts:
        self.calls += 1
        await asyncio.sleep(self.seconds)
        if self.fail:
            raise BackendUnavailable("down")
        return RunCounts(total=self.calls, succeeded=self.calls)


def test_an_answer_computed_on_one_replica_is_a_hit_on_another(any_redis: Any) -> None:
    any_redis.flush()

    async def scenario() -> list[Any]:
        async with fleet(any_redis.url, 2) as (one, two):
            load = Loads()
            first = await one.get_or_load(("counts", 1), 30, load, tenant=TENANT, value_type=RunCounts)
            second = await two.get_or_load(("counts", 1), 30, load, tenant=TENANT, value_type=RunCounts)
            third = await two.get_or_load(("counts", 1), 30, load, tenant=TENANT, value_type=RunCounts)
            other_tenant = await two.get_or_load(("counts", 1), 30, load, tenant="t2", value_type=RunCounts)
            return [first[1], second, third[1], other_tenant[1], load.calls]

    first, second, third, other_tenant, calls = run(scenario)
    assert (first, second, third) == ("miss", (RunCounts(total=1, succeeded=1), "hit"), "hit")
    assert other_tenant == "miss" and calls == 2  # never shared across tenants


def test_identical_misses_on_different_replicas_run_one_load(redis_url: str) -> None:
    async def scenario() -> tuple[int, list[RunCounts], list[str]]:
        async with fleet(redis_url, 3) as caches:
            load = Loads(seconds=0.3)
            found = await asyncio.gather(
                *(
                    cache.get_or_load(("c",), 30, load, tenant=TENANT, value_type=RunCounts)
                    for cache in caches * 3
                )
            )
            return load.calls, [value for value, _ in found], sorted(result for _, result in found)

    calls, values, results = run(scenario)
    assert calls == 1
    assert values == [RunCounts(total=1, succeeded=1)] * 9
    assert results.count("miss") == 3  # one caller per replica shares its replica's load ...
    assert results.count("hit") == 6  # ... two replicas' callers got the fleet's answer: "hit"


@pytest.mark.parametrize(
    ("lease_ms", "wait_max_s", "low_s", "high_s"),
    [
        # A replica died while loading: its lock lapses within its lease (here 1.5 s are left,
        # as after most of a lease) and a waiter loads the answer itself.
        (1_500, 30, 1.2, 3.5),
        # An hour's lease: no replica writes one longer than LOCK_LEASE_MS, so it is someone
        # else's, taken away at once, not waited on for an hour.
        (3_600_000, 30, 0.0, 1.0),
        # Looks like a replica's but is never let go (renewed by someone, or a stuck holder): the
        # waiter loads alone after the longest a statement may take (here 1 s).
        (10_000, 1, 0.9, 2.5),
    ],
    ids=["dead loader", "forged lease", "held too long"],
)
def test_a_waiter_loads_itself_when_the_lock_is_not_let_go(
    redis_url: str, lease_ms: int, wait_max_s: float, low_s: float, high_s: float
) -> None:
    async def scenario() -> tuple[int, float]:
        async with fleet(redis_url, 1, wait_max_s=wait_max_s) as (cache,):
            assert cache.shared is not None
            lock = cache.shared.key(TENANT, (lease_ms,), RunCounts) + ":lock"
            client = redis.Redis.from_url(redis_url)
            client.set(lock, "not let go", px=lease_ms)
            client.close()
            load = Loads()
            started = time.monotonic()
            async with asyncio.timeout(5):
                await cache.get_or_load((lease_ms,), 30, load, tenant=TENANT, value_type=RunCounts)
            return load.calls, time.monotonic() - started

    calls, waited = run(scenario)
    assert calls == 1 and low_s <= waited < high_s, waited


def test_a_kept_runs_lock_no_replica_wrote_holds_no_one_off(redis_url: str) -> None:
    """The same for the lock on reading the store for kept runs, which every daily measure of a
    tenant, app and zone passes through."""

    async def scenario(lease_ms: int) -> float:
        link = RedisLink(RedisSettings(url=redis_url, prefix=PREFIX))
        try:
            shared = SharedRuns(link, 1_000, wait_max_s=1)
            client = redis.Redis.from_url(redis_url)
            client.set(shared._base(TENANT, (lease_ms,)) + ":lock", "not a replica", px=lease_ms)
            client.close()
            started = time.monotonic()
            async with asyncio.timeout(5), shared.reading(TENANT, (lease_ms,)):
                return time.monotonic() - started
        finally:
            await link.close()

    assert asyncio.run(scenario(3_600_000)) < 0.5  # taken away at once
    assert 0.9 < asyncio.run(scenario(10_000)) < 2.5  # looks like a replica's: waited for 1 s


class Detail(msgspec.Struct, frozen=True):
    """An answer with a free-form field, as a run's inputs and outputs are."""

    inputs: Any


def test_a_value_nested_too_deeply_is_a_miss(redis_url: str) -> None:
    """Free-form fields decode to whatever nesting the value has: 100,000 levels overflow the
    decoder's stack, which must read as a miss (not a 400 or a 500)."""
    nested = b"\x81\xa6inputs" + b"\x91" * 100_000 + b"\x01"  # {"inputs": [[[...1...]]]}

    async def scenario() -> tuple[dict[Any, Any], dict[Any, Any]]:
        async with fleet(redis_url, 1) as (cache,):
            assert cache.shared is not None
            client = redis.Redis.from_url(redis_url)
            client.set(cache.shared.key(TENANT, ("deep",), Detail), nested, px=60_000)
            client.set(
                cache.shared.key(TENANT, ("fine",), Detail), msgspec.msgpack.encode(Detail([[1]])), px=60_000
            )
            client.close()
            return (
                await cache.shared.get_many(TENANT, [("deep",)], Detail),
                await cache.shared.get_many(TENANT, [("fine",)], Detail),
            )

    deep, fine = run(scenario)
    assert deep == {} and fine[("fine",)].value == Detail([[1]])


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\x00 not msgpack",
        msgspec.msgpack.encode({"total": "many"}),
        msgspec.msgpack.encode([1, 2, 3]),
        b"",
    ],
)
def test_anything_unreadable_in_redis_is_a_miss_not_an_error(redis_url: str, garbage: bytes) -> None:
    async def scenario() -> tuple[Any, int, float]:
        async with fleet(redis_url, 1) as (cache,):
            assert cache.shared is not None
            client = redis.Redis.from_url(redis_url)
            client.set(cache.shared.key(TENANT, ("c",), RunCounts), garbage, px=60_000)
            client.close()
            load = Loads()
            found = await cache.get_or_load(("c",), 30, load, tenant=TENANT, value_type=RunCounts)
            metrics = cache.shared.metrics
            assert metrics is not None
            unreadable = metrics.registry.get_sample_value(
                "dify_stats_shared_cache_total", {"result": "unreadable"}
            )
            return found, load.calls, unreadable or 0.0

    found, calls, unreadable = run(scenario)
    assert found == (RunCounts(total=1, succeeded=1), "miss") and calls == 1
    assert unreadable >= 1


def test_a_changed_struct_reads_other_keys() -> None:
    class Before(msgspec.Struct):
        total: int

    class After(msgspec.Struct):
        total: int
        paused: int = 0

    assert schema_tag(Before) != schema_tag(After)
    assert schema_tag(list[RunCounts]) != schema_tag(RunCounts)


def test_a_new_replica_answers_stale_from_the_fleet_while_the_store_fails(redis_url: str) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with fleet(redis_url, 2, stale_max=60) as (old, new):
            await old.get_or_load(("c",), 0.2, Loads(), tenant=TENANT, value_type=RunCounts)
            await asyncio.sleep(0.4)  # no longer fresh anywhere
            failing = Loads(fail=True)
            stale = await new.get_or_load(("c",), 0.2, failing, tenant=TENANT, value_type=RunCounts)
            with pytest.raises(BackendUnavailable):
                await new.get_or_load(("other",), 0.2, failing, tenant=TENANT, value_type=RunCounts)
            return stale, failing.calls

    stale, calls = run(scenario)
    assert stale == (RunCounts(total=1, succeeded=1), "stale") and calls == 2


def test_without_redis_each_replica_answers_alone_at_once(redis_server: Any, redis_url: str) -> None:
    async def scenario() -> tuple[list[str], float, str]:
        async with fleet(redis_url, 2) as (one, two):
            redis_server.stop()
            load = Loads()
            started = time.monotonic()
            results = [
                (await cache.get_or_load(("c",), 30, load, tenant=TENANT, value_type=RunCounts))[1]
                for cache in (one, two, one)
            ]
            assert one.shared is not None
            return results, time.monotonic() - started, one.shared.link.state

    results, took, state = run(scenario)
    assert results == ["miss", "miss", "hit"] and state == "down"
    assert took < 3.5, took  # about one timeout per replica, then the circuit answers at once


def test_a_replica_that_takes_the_lock_after_the_answer_was_written_does_not_load_it_again(
    redis_url: str,
) -> None:
    """Replica one loads and writes the answer, then lets go of the lock; replica two looked
    before the write (a miss) and takes the lock after the release: it finds the answer there,
    instead of loading it a second time."""

    async def scenario() -> tuple[tuple[RunCounts, bool], int]:
        async with fleet(redis_url, 2) as (one, two):
            assert one.shared is not None and two.shared is not None
            await one.shared.load_once(TENANT, ("c",), 30, RunCounts, Loads())  # written, let go
            again = Loads()
            found = await two.shared.load_once(TENANT, ("c",), 30, RunCounts, again)
            return found, again.calls

    found, calls = run(scenario)
    assert (found, calls) == ((RunCounts(total=1, succeeded=1), True), 0)


def test_a_lock_of_another_type_is_taken_away(redis_url: str) -> None:
    async def scenario() -> tuple[int, float]:
        async with fleet(redis_url, 1) as (cache,):
            assert cache.shared is not None
            lock = cache.shared.key(TENANT, ("h",), RunCounts) + ":lock"
            client = redis.Redis.from_url(redis_url)
            client.hset(lock, "held", "by someone")
            client.pexpire(lock, 5_000)  # a lease as long as a replica's, but not a replica's
            client.close()
            load = Loads()
            started = time.monotonic()
            await cache.get_or_load(("h",), 30, load, tenant=TENANT, value_type=RunCounts)
            return load.calls, time.monotonic() - started

    calls, waited = run(scenario)
    assert calls == 1 and waited < 1.0, waited


def test_another_release_reads_none_of_these_keys(redis_url: str, tmp_path: Path) -> None:
    """Keys carry the release: the version and a digest of the SQL sent. A rollout that changes
    one statement neither serves the answers of the release before it nor has them served."""
    root = Path(queries.__file__).parent
    changed = tmp_path / "queries"
    shutil.copytree(root, changed)
    (changed / "daily.py").write_text((changed / "daily.py").read_text() + "\n# a fix\n")
    files = sql_files()
    moved = [changed / path.relative_to(root) if path.is_relative_to(root) else path for path in files]
    assert sql_digest(moved) != sql_digest(files)
    assert release() == release() and release().startswith(app.__version__)

    async def scenario() -> tuple[str, str, int]:
        links = [
            RedisLink(RedisSettings(url=redis_url, prefix=PREFIX), release=tag)
            for tag in (release(), f"{app.__version__}-{sql_digest(moved)}")
        ]
        try:
            old, new = (AnswerCache(100, 60, shared=SharedAnswers(link, 60)) for link in links)
            load = Loads()
            first = await old.get_or_load(("c",), 30, load, tenant=TENANT, value_type=RunCounts)
            second = await new.get_or_load(("c",), 30, load, tenant=TENANT, value_type=RunCounts)
            return first[1], second[1], load.calls
        finally:
            for link in links:
                await link.close()

    assert run(scenario) == ("miss", "miss", 2)


def test_without_the_near_cache_every_hit_is_read_from_redis(redis_url: str) -> None:
    """STATS_NEAR_CACHE=off (the benchmark's measure of Redis alone): nothing the fleet shares is
    kept in the process; each hit is a read of Redis."""

    async def scenario() -> tuple[list[str], int, float | None]:
        link = RedisLink(RedisSettings(url=redis_url, prefix=PREFIX), Metrics())
        try:
            cache = AnswerCache(100, 60, shared=SharedAnswers(link, 60, link.metrics), near=False)
            load = Loads()
            results = [
                (await cache.get_or_load(("c",), 30, load, tenant=TENANT, value_type=RunCounts))[1]
                for _ in range(3)
            ]
            assert link.metrics is not None
            hits = link.metrics.registry.get_sample_value("dify_stats_shared_cache_total", {"result": "hit"})
            return results, len(cache), hits
        finally:
            await link.close()

    assert run(scenario) == (["miss", "hit", "hit"], 0, 2.0)
