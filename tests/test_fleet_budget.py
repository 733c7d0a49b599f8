"""The fleet's query budget on a real Redis (6.2 and a current Valkey): several replicas' budgets
(each with its own connection to Redis, as separate processes have) never hold more than
STATS_POOL_SIZE slots together, one alone may hold them all, waiters are served in order, a
tenant holds at most its share fleet-wide, and a dead holder's slots come back by themselves.
tests/test_replicas.py shows the same with real service processes and statements."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import redis

from app.config import RedisSettings
from app.fleet.budget import LEASE_MS, FleetBudget
from app.fleet.link import RedisLink

T1, T2 = "0a000000-0000-4000-8000-00000000000a", "0b000000-0000-4000-8000-00000000000b"


@asynccontextmanager
async def replicas(url: str, count: int, size: int, share: float = 1.0) -> AsyncIterator[list[FleetBudget]]:
    """`count` replicas' budgets over one Redis, each on a link of its own."""
    async with AsyncExitStack() as stack:
        budgets = []
        for _ in range(count):
            link = RedisLink(RedisSettings(url=url, prefix="test-budget:"))
            await link.start()
            stack.push_async_callback(link.close)
            budget = FleetBudget(link, "logstore:store", size, share)
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
    """Anyone who can write to Redis may add slots dated far ahead, or waiters that never ask
    again (without a heartbeat in the alive set), or members without a tenant: none of them may
    hold the fleet's budget, or every uncached request would wait for ever."""
    any_redis.flush()

    async def scenario() -> tuple[int, int]:
        async with replicas(any_redis.url, 2, size=3) as budgets:
            slots, queue, _alive, _ticket = budgets[0]._keys
            client = redis.Redis.from_url(any_redis.url)
            try:
                forged_far = {f"{T1}|forged-{n}": 99_999_999_999_999 for n in range(3)}
                client.zadd(slots, {**forged_far, "no-tenant-at-all": 99_999_999_999_999})
                client.zadd(queue, {f"{T2}|ghost-{n}": n - 100 for n in range(5)})
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
