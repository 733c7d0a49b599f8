"""The fleet's query budget on a real Redis (6.2 and a current Valkey): several replicas' budgets
(each with its own connection to Redis, as separate processes have) never hold more than
STATS_POOL_SIZE slots together, one alone may hold them all, waiters are served in order, a
tenant holds at most its share fleet-wide, and a dead holder's slots come back by themselves.
tests/test_replicas.py shows the same with real service processes and statements."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import redis
from litestar.testing import TestClient

from app.config import RedisSettings, load_settings
from app.fleet.budget import LEASE_MS, FleetBudget
from app.fleet.link import LeasedLock, RedisLink, SharedUnavailable
from app.main import create_app
from app.metrics import Metrics
from app.stores.backend import Backend
from tests.redis_server import commands_run

T1, T2 = "0a000000-0000-4000-8000-00000000000a", "0b000000-0000-4000-8000-00000000000b"
A = "a1000000-0000-4000-8000-0000000000a1"


@asynccontextmanager
async def replicas(
    url: str, count: int, size: int, share: float = 1.0, settings: RedisSettings | None = None
) -> AsyncIterator[list[FleetBudget]]:
    """`count` replicas' budgets over one Redis, each on a link (and metrics) of its own."""
    async with AsyncExitStack() as stack:
        budgets = []
        for _ in range(count):
            metrics = Metrics()
            link = RedisLink(settings or RedisSettings(url=url, prefix="test-budget:"), metrics)
            await link.start()
            stack.push_async_callback(link.close)
            budget = FleetBudget(link, "logstore:store", size, share, metrics)
            budget.start()
            stack.push_async_callback(budget.close)
            budgets.append(budget)
        for budget in budgets:  # each has seen them all, as after a heartbeat
            await budget.link.beat()
        yield budgets


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())


def test_never_more_than_the_budget_fleet_wide(any_redis: Any) -> None:
    any_redis.flush()

    async def scenario() -> tuple[int, int]:
        async with replicas(any_redis.url, 3, size=4) as budgets:
            running = peak = done = 0

            async def statement(budget: FleetBudget) -> None:
                nonlocal running, peak, done
                async with budget.hold(T1 if done % 2 else T2):
                    running += 1
                    peak = max(peak, running)
                    await asyncio.sleep(0.02)
                    running -= 1
                    done += 1

            await asyncio.gather(*(statement(budgets[n % 3]) for n in range(60)))
            return peak, done

    peak, done = run(scenario)
    assert (peak, done) == (4, 60)


def test_one_replica_alone_may_use_the_whole_budget(redis_url: str) -> None:
    async def scenario() -> int:
        async with replicas(redis_url, 3, size=5) as budgets, AsyncExitStack() as holding:
            for _ in range(5):
                await holding.enter_async_context(budgets[0].hold(None))
            with pytest.raises(TimeoutError):  # the sixth waits, on any replica
                async with asyncio.timeout(0.6):
                    await holding.enter_async_context(budgets[1].hold(None))
            return budgets[0].in_use

    assert run(scenario) == 5


def test_waiters_across_replicas_are_served_in_order(redis_url: str) -> None:
    async def scenario() -> list[int]:
        async with replicas(redis_url, 3, size=1) as budgets:
            served: list[int] = []
            async with budgets[0].hold(None):
                waiting = []
                for n in range(9):  # queued one after another, on alternating replicas
                    waiting.append(asyncio.create_task(_take(budgets[n % 3], n, served)))
                    await asyncio.sleep(0.08)
            await asyncio.gather(*waiting)
            return served

    assert run(scenario) == list(range(9))


async def _take(budget: FleetBudget, n: int, served: list[int]) -> None:
    async with budget.hold(None):
        served.append(n)
        await asyncio.sleep(0.01)


def test_a_tenant_holds_at_most_its_share_fleet_wide_and_others_pass_it(redis_url: str) -> None:
    async def scenario() -> tuple[int, bool]:
        async with replicas(redis_url, 2, size=4, share=0.5) as budgets:
            async with AsyncExitStack() as holding:
                await holding.enter_async_context(budgets[0].hold(T1))
                await holding.enter_async_context(budgets[1].hold(T1))
                blocked = asyncio.create_task(_hold_briefly(budgets[0], T1))  # T1's third: waits
                await asyncio.sleep(0.3)
                async with asyncio.timeout(2):  # T2 is served although T1 queued first
                    await holding.enter_async_context(budgets[1].hold(T2))
                third_waits = not blocked.done()
                in_use = budgets[1].in_use
            await blocked
            return in_use, third_waits

    in_use, third_waits = run(scenario)
    assert (in_use, third_waits) == (3, True)


async def _hold_briefly(budget: FleetBudget, tenant: str) -> None:
    async with budget.hold(tenant):
        await asyncio.sleep(0.01)


def test_a_dead_holders_slots_come_back_within_the_lease(redis_url: str) -> None:
    """A replica killed while holding slots never gives them back: their leases lapse, on Redis's
    clock, within LEASE_MS (10 s), and a waiter elsewhere gets them."""

    async def scenario() -> float:
        async with replicas(redis_url, 2, size=2) as (doomed, survivor):
            for _ in range(2):  # taken, then the holder dies: never renewed, never given back
                assert await doomed._acquire("") is not None
            started = time.monotonic()
            async with asyncio.timeout(LEASE_MS / 1000 + 5):
                async with survivor.hold(None):
                    return time.monotonic() - started

    waited = run(scenario)
    assert waited <= LEASE_MS / 1000 + 1.5, waited


def test_without_redis_a_replica_keeps_its_share_of_the_budget(redis_server: Any, redis_url: str) -> None:
    """Redis down: statements are still answered, each replica holding at most STATS_POOL_SIZE
    divided by the replicas it last saw alive; Redis back, the fleet's budget again."""

    async def scenario() -> tuple[int, int, str, str]:
        async with replicas(redis_url, 3, size=6) as budgets:
            redis_server.stop()
            peak = running = 0

            async def statement() -> None:
                nonlocal peak, running
                async with budgets[0].hold(T1):
                    running += 1
                    peak = max(peak, running)
                    await asyncio.sleep(0.05)
                    running -= 1

            started = time.monotonic()
            await asyncio.gather(*(statement() for _ in range(12)))
            elapsed = time.monotonic() - started
            state_down = budgets[0].link.state
            redis_server.start()
            await asyncio.wait_for(budgets[0].link.recovered.wait(), 10)
            async with budgets[0].hold(T1):
                in_use = budgets[0].in_use
            assert elapsed < 5, elapsed
            return peak, in_use, state_down, budgets[0].link.state

    peak, in_use, down, up = run(scenario)
    assert (peak, in_use, down, up) == (2, 1, "down", "up")  # 6 / 3 replicas seen = 2 at once


def test_every_budget_key_expires(redis_url: str) -> None:
    async def scenario() -> None:
        async with replicas(redis_url, 1, size=2) as (budget,), budget.hold(T1):
            pass

    run(scenario)
    client = redis.Redis.from_url(redis_url)
    try:
        keys = client.keys("test-budget:*")
        assert keys
        assert all(client.pttl(key) > 0 for key in keys), {key: client.pttl(key) for key in keys}
    finally:
        client.close()


def test_leases_and_waiters_no_replica_wrote_hold_nothing(any_redis: Any) -> None:
    """Anyone who can write to Redis may add slots dated far ahead, or waiters of replicas that
    never ask (none of them alive), or members without a tenant: none of them may hold the
    fleet's budget, or every uncached request would wait for ever."""
    any_redis.flush()

    async def scenario() -> tuple[int, int]:
        async with replicas(any_redis.url, 2, size=3) as budgets:
            slots, queue, heads, _alive, _ticket = budgets[0]._keys
            client = redis.Redis.from_url(any_redis.url)
            try:
                forged_far = {f"{T1}|forged-{n}": 99_999_999_999_999 for n in range(3)}
                client.zadd(slots, {**forged_far, "no-tenant-at-all": 99_999_999_999_999})
                client.zadd(queue, {f"{T2}|{n:015d}|ghost-replica|{n}": 0 for n in range(5)})
                client.zadd(heads, {T2: 0})
                for key in (slots, queue, heads):
                    client.pexpire(key, 60_000)
            finally:
                client.close()
            async with asyncio.timeout(2), budgets[1].hold(T1), budgets[0].hold(T2):
                return budgets[1].in_use, budgets[0].in_use

    assert run(scenario) == (1, 2)  # slots held fleet-wide as each was granted: ours alone


def test_replicas_seen_ignores_heartbeats_no_replica_wrote(redis_url: str) -> None:
    """Forged heartbeats dated far ahead would shrink each replica's local share, when Redis
    fails, to one statement for ever."""

    async def scenario() -> int:
        async with replicas(redis_url, 2, size=4) as budgets:
            client = redis.Redis.from_url(redis_url)
            try:
                client.zadd(
                    budgets[0].link.key("replicas"), {f"ghost-{n}": 99_999_999_999_999 for n in range(50)}
                )
            finally:
                client.close()
            await budgets[0].link.beat()
            return budgets[0].link.replicas_seen

    assert run(scenario) == 2


def test_a_statement_whose_time_runs_out_in_the_queue_says_so(redis_url: str) -> None:
    """Slots held for longer than a statement may wait (a busy fleet, or slots someone keeps
    forging in Redis) end the waiting statement as its timeout says; the log says why."""
    from structlog.testing import capture_logs

    async def scenario() -> list[dict[str, Any]]:
        async with replicas(redis_url, 2, size=1) as budgets, budgets[0].hold(None):
            with capture_logs() as logs, pytest.raises(TimeoutError):
                async with asyncio.timeout(1.2), budgets[1].hold(T1):
                    pass
            return logs

    (warning,) = [line for line in run(scenario) if line["event"] == "fleet_slot_not_granted"]
    assert warning["slots_held"] == 1 and warning["waited_s"] >= 1


def _sample(budget: FleetBudget, name: str, **labels: str) -> float | None:
    assert budget.metrics is not None
    return budget.metrics.registry.get_sample_value(name, labels)


def _shared_keys(url: str, budget: FleetBudget) -> dict[str, tuple[str, int]]:
    """Each budget key's type and time left (ms)."""
    client = redis.Redis.from_url(url)
    try:
        return {key: (client.type(key).decode(), client.pttl(key)) for key in budget._keys}
    finally:
        client.close()


# What anyone who can write to Redis may leave under the budget's keys, none of it written by a
# replica: a ticket that is not a count (the increment fails on each), keys without a TTL, keys of
# another type. Each would fail the budget's script on every statement (the fleet falls back to
# local shares, silently and for good) or hold slots for ever.
FORGERIES: dict[str, Callable[[redis.Redis, list[str]], Any]] = {
    "ticket 1.5": lambda client, keys: client.set(keys[4], "1.5", px=60_000),
    "ticket nan": lambda client, keys: client.set(keys[4], "nan", px=60_000),
    "ticket 1e308": lambda client, keys: client.set(keys[4], "1e308", px=60_000),
    "ticket of 20 digits": lambda client, keys: client.set(keys[4], "9" * 20, px=60_000),
    "ticket a list": lambda client, keys: (client.rpush(keys[4], "1"), client.pexpire(keys[4], 60_000)),
    "slots a string": lambda client, keys: client.set(keys[0], "3", px=60_000),
    "slots without a TTL": lambda client, keys: client.zadd(
        keys[0], {f"{T2}|{n:015d}|r|x": time.time() * 1000 + 9_000 for n in range(3)}
    ),
    "queue a hash": lambda client, keys: (client.hset(keys[1], "a", "b"), client.pexpire(keys[1], 60_000)),
    "heads a list": lambda client, keys: (client.rpush(keys[2], T1), client.pexpire(keys[2], 60_000)),
    "alive a string": lambda client, keys: client.set(keys[3], "x", px=60_000),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_budget_values_are_repaired_and_the_budget_stays_the_fleets(
    redis_url: str, forgery: str
) -> None:
    async def scenario() -> tuple[bool, int, dict[str, tuple[str, int]], bytes]:
        async with replicas(redis_url, 2, size=3) as (one, two):
            client = redis.Redis.from_url(redis_url)
            try:
                FORGERIES[forgery](client, one._keys)
                async with asyncio.timeout(3), one.hold(T1), two.hold(T1):
                    local, in_use = one.local or two.local, two.in_use
                return local, in_use, _shared_keys(redis_url, one), client.get(one._keys[4])
            finally:
                client.close()

    local, in_use, found, ticket = run(scenario)
    assert (local, in_use) == (False, 2)  # both slots through the fleet's budget, nothing else held
    kinds = {"slots": "zset", "queue": "zset", "heads": "zset", "alive": "zset", "ticket": "string"}
    for key, (kind, left_ms) in found.items():
        assert kind in (kinds[key.rsplit(":", 1)[1]], "none"), (key, kind)
        assert kind == "none" or left_ms > 0, (key, left_ms)
    assert ticket.isdigit(), ticket


def test_a_failing_budget_script_puts_the_replica_on_local_shares_and_says_so(
    database_url: str, redis_url: str
) -> None:
    """Redis refusing the budget's script (here: its user may no longer run scripts, an ACL
    change) fails it on every statement: the replica runs on its local share, /readyz says
    `"budget": "local"` (Redis itself answers: `"redis": "up"`), /metrics says so and counts the
    failed calls; once Redis runs scripts again, the fleet's budget again."""
    settings = load_settings({"STATS_DATABASE_URL": database_url, "STATS_REDIS_URL": redis_url})
    path = f"/v1/tenants/{T1}/apps/{A}/statistics/daily-runs"
    client = redis.Redis.from_url(redis_url)
    with TestClient(app=create_app(settings, Backend(database_url, settings))) as service:
        assert service.get("/readyz").json()["budget"] == "fleet"
        try:
            client.acl_setuser("default", enabled=True, reset_keys=False, commands=["-evalsha", "-eval"])
            answered = service.get(path, params={"start": "2025-01-01", "end": "2025-01-02"})
            ready = service.get("/readyz").json()
            metrics = service.get("/metrics").text
        finally:
            client.acl_setuser("default", enabled=True, commands=["+@all"])
            client.close()
        assert answered.status_code == 200
        assert (ready["redis"], ready["budget"]) == ("up", "local")
        assert 'dify_stats_budget_local{source="logstore"} 1.0' in metrics
        assert re.search(r'dify_stats_redis_errors_total\{kind="NoPermissionError"\} [1-9]', metrics), metrics
        assert service.get(path, params={"start": "2025-01-02", "end": "2025-01-03"}).status_code == 200
        assert service.get("/readyz").json()["budget"] == "fleet"
        assert 'dify_stats_budget_local{source="logstore"} 0.0' in service.get("/metrics").text


def test_the_work_per_freed_slot_does_not_grow_with_the_queue(redis_url: str) -> None:
    """A freed slot goes to the next waiter in the script that frees it, and only that waiter
    wakes: the commands Redis runs per statement are the same behind 12 waiters as behind 90
    (each of the 3 replicas' waiters re-running a walk of the whole queue made it quadratic)."""

    async def per_statement(waiting: int) -> float:
        async with replicas(redis_url, 3, size=2) as budgets:
            before = commands_run(redis_url)

            async def statement(budget: FleetBudget) -> None:
                async with budget.hold(T1):
                    await asyncio.sleep(0.005)

            await asyncio.gather(*(statement(budgets[n % 3]) for n in range(waiting)))
            spent = commands_run(redis_url) - before
            assert all(budget.link.up and not budget.local for budget in budgets)
            return spent / waiting

    few, many = run(lambda: per_statement(12)), run(lambda: per_statement(90))
    assert many < 1.3 * few and many < 150, (few, many)


def test_the_slots_in_use_gauge_says_how_many_are_held_now(redis_url: str) -> None:
    """An idle replica reports the slots held fleet-wide at each scrape, not the count it last saw
    (it saw none; then all were let go)."""

    async def scenario() -> list[float | None]:
        async with replicas(redis_url, 2, size=4) as (busy, idle):
            seen = []
            async with busy.hold(T1), busy.hold(T2):
                assert idle.metrics is not None
                await idle.metrics.scrape()
                seen.append(_sample(idle, "dify_stats_fleet_slots_in_use", source="logstore"))
            await idle.metrics.scrape()
            seen.append(_sample(idle, "dify_stats_fleet_slots_in_use", source="logstore"))
            return seen

    assert run(scenario) == [2.0, 0.0]


def test_leases_and_locks_outlive_a_failover_to_a_master_whose_clock_is_behind(tmp_path: Path) -> None:
    """Leases are dated on the master's clock. The old master's clock here is a minute ahead of
    the new one's (its leases and locks are dated a minute further ahead than a replica dates
    one): after the failover the budget is still full and the lock still held, as they are."""
    from tests.redis_server import start_sentinel_group

    group = start_sentinel_group(tmp_path / "sentinel")
    settings = RedisSettings(
        sentinels=(("127.0.0.1", group.sentinel_port),), sentinel_service_name=group.service_name
    )
    skew_ms = 60_000

    async def scenario() -> tuple[bool, bool]:
        async with replicas("", 2, size=2, settings=settings) as (holder, asker), AsyncExitStack() as holding:
            for _ in range(2):
                await holding.enter_async_context(holder.hold(T1))
            lock = LeasedLock(holder.link, holder.link.key("test-lock"))
            assert await lock.take()
            master = redis.Redis(port=group.master.port)
            try:
                slots = holder._keys[0]
                for member, expiry in master.zrange(slots, 0, -1, withscores=True):
                    master.zadd(slots, {member: expiry + skew_ms})
                master.pexpire(lock.name, master.pttl(lock.name) + skew_ms)
                assert master.wait(1, 5_000) == 1  # the replica has it all
            finally:
                master.close()
            group.master.stop()  # SIGKILL: the sentinel promotes the replica
            for link in (holder.link, asker.link):
                await _answering(link)
            with suppress(TimeoutError):
                async with asyncio.timeout(1.5), asker.hold(T2):
                    return True, False  # a third statement was let in: a lease was taken away
            other = LeasedLock(asker.link, lock.name)
            await other.wait(asyncio.get_running_loop().time() + 0.5)
            await other.release()
            await lock.release()
            return False, other.held

    try:
        assert run(scenario) == (False, False)
    finally:
        group.stop()


async def _answering(link: RedisLink) -> None:
    """Once the link has found the new master (its circuit closed again, a call answered)."""
    async with asyncio.timeout(30):
        while True:
            with suppress(SharedUnavailable):
                await link.run(lambda client: client.ping())
                return
            await asyncio.sleep(0.2)
