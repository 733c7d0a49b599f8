"""Replicas sharing one Redis, as real `python -m app serve` processes on the SLS-like set-up.

- A Grafana-style refresh storm (viewers refreshing a 90-day dashboard, one panel per daily
  measure, round after round as answers expire) through 3 replicas and through 1: statements sent
  (the replicas' own counts, /metrics) and rows read (PostgreSQL's table statistics), 3 ÷ 1
  (goal 1.0).
- Per panel, the first answer of a fresh replica for a dashboard the fleet already serves,
  against the same panel asked alone of a cold replica (goal: at least 50 times faster). Per
  panel, so that the figure does not grow with the number of panels a dashboard has.
- Cached answers per second of a replica of the fleet reading every hit from Redis (the near,
  in-process cache off: STATS_NEAR_CACHE=off), against a replica without Redis answering from
  memory (goal ≥ 0.8); and of one with the near cache on, as deployed. The three take turns,
  three rounds, and each figure is its median.
- The fleet's budget under a queue: 3 replicas x 128 statements waiting at once for 4 slots
  (in-process budgets, each on a Redis connection of its own): Redis commands per statement
  (one slot freed each), and whether any replica's Redis circuit opened.
- A replica killed while holding every slot: seconds until another replica gets one (goal ≤ 15).
"""

from __future__ import annotations

import asyncio
import re
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from app.config import RedisSettings
from app.core.measures import DAILY_MEASURES
from app.demo import demo_apps
from app.fleet.budget import FleetBudget
from app.fleet.link import RedisLink
from app.metrics import Metrics
from tests.db import locked_table
from tests.live import wait_until_answering
from tests.processes import Service, cli_env, service
from tests.redis_server import commands_run, start_server

POOL = 4
QUEUE_REPLICAS, QUEUE_WAITERS, HOLD_S = 3, 128, 0.02  # the budget under a queue
ROUNDS = 4
VIEWERS = 8
ROUND_GAP_S = 6.0  # answers touching live days are cached STATS_CACHE_TTL = 5 s here
CACHE_TTL_S = "5"
_COUNT = re.compile(r"^dify_stats_backend_query_seconds_count\{[^}]*\} (\S+)$", re.MULTILINE)


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _dashboard(days: int = 90) -> list[tuple[str, dict[str, str]]]:
    """The panels (one per daily measure) of a dashboard showing now-`days`d..now."""
    app = demo_apps()[0]
    now = time.time()
    params = {"start": _iso(now - days * 86_400), "end": _iso(now), "timezone": "UTC"}
    base = f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}/statistics"
    return [(f"{base}{measure.native_path}", params) for measure in DAILY_MEASURES]


def _statements(replicas: list[Service]) -> int:
    total = 0.0
    for replica in replicas:
        total += sum(
            float(found) for found in _COUNT.findall(httpx.get(f"{replica.base}/metrics", timeout=10).text)
        )
    return int(total)


def _rows_read(url: str) -> int:
    time.sleep(1.2)  # PostgreSQL publishes a backend's table statistics within a second
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables "
            "WHERE relname = 'workflow_execution'"
        ).fetchone()
    return int(row[0]) if row else 0


async def _ask(requests: list[tuple[Service, str, dict[str, str]]]) -> list[float]:
    """Every request at once; each one's milliseconds."""
    async with httpx.AsyncClient(
        timeout=120, limits=httpx.Limits(max_connections=len(requests) + 1)
    ) as client:

        async def one(replica: Service, path: str, params: dict[str, str]) -> float:
            started = time.perf_counter()
            answer = await client.get(f"{replica.base}{path}", params=params)
            assert answer.status_code == 200, answer.text
            return (time.perf_counter() - started) * 1000

        return list(await asyncio.gather(*(one(*request) for request in requests)))


@contextmanager
def _fleet(url: str, count: int, workdir: Path, **settings: str) -> Iterator[list[Service]]:
    defaults = {"STATS_POOL_SIZE": str(POOL), "STATS_TENANT_SHARE": "1", "STATS_CACHE_TTL": CACHE_TTL_S}
    env = cli_env(workdir, STATS_DATABASE_URL=url, STATS_LOG_LEVEL="warning", **{**defaults, **settings})
    with ExitStack() as stack:
        replicas = [stack.enter_context(service(env)) for _ in range(count)]
        for replica in replicas:
            wait_until_answering(f"{replica.base}/readyz", 120, replica.process)
            if replica.process.poll() is not None:
                raise RuntimeError("a replica did not start:\n" + "\n".join(replica.lines[-20:]))
        yield replicas


def _storm(replicas: list[Service]) -> tuple[int, list[tuple[str, dict[str, str]]]]:
    """Statements the storm sent, and the last round's dashboard. (Rows read are counted once
    the replicas have stopped: PostgreSQL publishes an idle connection's statistics late.)"""
    statements = _statements(replicas)
    panels = _dashboard()
    for round_number in range(ROUNDS):
        panels = _dashboard()
        requests = [
            (replicas[(viewer + panel) % len(replicas)], path, params)
            for viewer in range(VIEWERS)
            for panel, (path, params) in enumerate(panels)
        ]
        asyncio.run(_ask(requests))
        if round_number < ROUNDS - 1:
            time.sleep(ROUND_GAP_S)
    return _statements(replicas) - statements, panels


def _panel_ms(replica: Service, panel: tuple[str, dict[str, str]]) -> float:
    """One panel asked alone."""
    path, params = panel
    return asyncio.run(_ask([(replica, path, params)]))[0]


def _panels_fresh(fresh: Service, dashboard: list[tuple[str, dict[str, str]]]) -> list[float]:
    """Each panel asked alone of a fresh replica, right after the fleet answered the dashboard."""
    return [_panel_ms(fresh, panel) for panel in dashboard]


def _panels_cold(
    url: str, workdir: Path, dashboard: list[tuple[str, dict[str, str]]], **shared: str
) -> list[float]:
    """Each panel asked alone of a replica of its own, with nothing cached anywhere (its own prefix)."""
    cold = []
    for measure, panel in zip(DAILY_MEASURES, dashboard, strict=True):
        with _fleet(url, 1, workdir, STATS_REDIS_PREFIX=f"cold-{measure.name}:", **shared) as (replica,):
            cold.append(_panel_ms(replica, panel))
    return cold


async def _per_second(base: str, path: str, params: dict[str, str], seconds: float, clients: int) -> float:
    done = 0
    async with httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_connections=clients)) as client:
        await client.get(path, params=params)
        until = time.monotonic() + seconds

        async def one_client() -> None:
            nonlocal done
            while time.monotonic() < until:
                answer = await client.get(path, params=params)
                assert answer.status_code == 200 and answer.headers["x-cache"] == "hit"
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        return done / (time.monotonic() - started)


def _cached_rps(replicas: dict[str, Service], rounds: int = 3) -> dict[str, float]:
    """Hits per second of each replica under the same load, the replicas taking turns for
    `rounds` rounds (so that a busy moment of the machine weighs on each alike): the median of
    each. The range has settled (cached STATS_SETTLED_TTL), so every answer is a hit."""
    path, params = _dashboard(30)[0]
    params = {**params, "start": params["start"][:10], "end": _iso(time.time() - 3 * 86_400)[:10]}
    seen: dict[str, list[float]] = {name: [] for name in replicas}
    for _ in range(rounds):
        for name, replica in replicas.items():
            seen[name].append(asyncio.run(_per_second(replica.base, path, params, 3, 16)))
    return {name: statistics.median(figures) for name, figures in seen.items()}


def _budget_queue(url: str) -> dict[str, Any]:
    """QUEUE_REPLICAS x QUEUE_WAITERS statements asking at once for POOL slots of the fleet's
    budget, each holding its slot HOLD_S: Redis commands per statement (each frees one slot),
    Redis calls that failed (the first opens a replica's circuit), statements on a local share."""

    async def storm() -> dict[str, Any]:
        metrics = [Metrics() for _ in range(QUEUE_REPLICAS)]
        links = [RedisLink(RedisSettings(url=url, prefix="queue:"), each) for each in metrics]
        budgets = [
            FleetBudget(link, "logstore:bench", POOL, 1.0, each)
            for link, each in zip(links, metrics, strict=True)
        ]
        for link, budget in zip(links, budgets, strict=True):
            await link.start()
            budget.start()
        on_local_share = 0

        async def statement(budget: FleetBudget) -> None:
            nonlocal on_local_share
            async with budget.hold("0a000000-0000-4000-8000-00000000000a"):
                on_local_share += budget.local
                await asyncio.sleep(HOLD_S)

        statements = QUEUE_REPLICAS * QUEUE_WAITERS
        before = commands_run(url)
        started = time.perf_counter()
        await asyncio.gather(*(statement(budgets[n % QUEUE_REPLICAS]) for n in range(statements)))
        seconds = time.perf_counter() - started
        commands = commands_run(url) - before
        failed = sum(
            sample.value
            for each in metrics
            for family in each.registry.collect()
            if family.name == "dify_stats_redis_errors"
            for sample in family.samples
            if sample.name.endswith("_total")
        )
        for link, budget in zip(links, budgets, strict=True):
            await budget.close()
            await link.close()
        return {
            "statements": statements,
            "slots": POOL,
            "redis_commands_per_statement": round(commands / statements, 1),
            "redis_calls_failed": int(failed),
            "statements_on_a_local_share": on_local_share,
            "seconds": round(seconds, 2),
            "floor_seconds": round(statements * HOLD_S / POOL, 2),
        }

    return asyncio.run(storm())


def _dead_holder_seconds(url: str, replicas: list[Service]) -> float:
    doomed, survivor = replicas
    app = demo_apps()[0]
    path = f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}/statistics/daily-runs"
    asks = [{"start": _iso(time.time() - days * 86_400)[:10], "timezone": "UTC"} for days in range(20, 30)]
    with locked_table(url) as waiting:

        def flood() -> None:
            with suppress_transport():
                asyncio.run(_ask([(doomed, path, params) for params in asks]))

        threading.Thread(target=flood, daemon=True).start()
        deadline = time.monotonic() + 30
        while waiting() < POOL and time.monotonic() < deadline:
            time.sleep(0.05)
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(10)
        killed = time.monotonic()
    answer = httpx.get(
        f"{survivor.base}{path}", params={"start": _iso(time.time() - 40 * 86_400)[:10]}, timeout=60
    )
    assert answer.status_code == 200
    return time.monotonic() - killed


def suppress_transport() -> AbstractContextManager[None]:
    return suppress(httpx.TransportError, AssertionError)  # the replica this measurement killed


def measure(url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dify-stats-fleet-") as scratch:
        workdir = Path(scratch)
        redis = start_server("redis-6.2", workdir / "redis")
        try:
            shared = {"STATS_REDIS_URL": redis.url}
            rows = _rows_read(url)
            with _fleet(url, 1, workdir, STATS_REDIS_PREFIX="one:", **shared) as one:
                alone = {"statements": _storm(one)[0]}
            alone["rows_read"], rows = _rows_read(url) - rows, _rows_read(url)
            with _fleet(url, 4, workdir, STATS_REDIS_PREFIX="three:", **shared) as (*three, fresh):
                statements, dashboard = _storm(three)  # the fourth, fresh, has answered nothing yet
                before = _statements([fresh])
                fresh_ms = _panels_fresh(fresh, dashboard)
                fresh_statements = _statements([fresh]) - before
            fleet = {"statements": statements, "rows_read": _rows_read(url) - rows}
            cold_ms = _panels_cold(url, workdir, dashboard, **shared)
            with (
                _fleet(url, 1, workdir) as (alone_in_process,),
                _fleet(url, 1, workdir, STATS_REDIS_PREFIX="three:", STATS_NEAR_CACHE="off", **shared) as (
                    far,
                ),
                _fleet(url, 1, workdir, STATS_REDIS_PREFIX="three:", **shared) as (near,),
            ):
                rps = _cached_rps({"in_process": alone_in_process, "redis_only": far, "near_cache": near})
            queue = _budget_queue(redis.url)
            with _fleet(url, 2, workdir, STATS_REDIS_PREFIX="dead:", STATS_CACHE_TTL="0", **shared) as pair:
                dead_s = _dead_holder_seconds(url, pair)
        finally:
            redis.stop()
    speedups = [cold / fresh for cold, fresh in zip(cold_ms, fresh_ms, strict=True)]
    panels = [
        {
            "panel": measure.name,
            "cold_ms": round(cold, 1),
            "fresh_ms": round(fresh, 1),
            "speedup": round(up, 1),
        }
        for measure, cold, fresh, up in zip(DAILY_MEASURES, cold_ms, fresh_ms, speedups, strict=True)
    ]
    return {
        "storm_1_replica": alone,
        "storm_3_replicas": fleet,
        "statements_3_over_1": round(fleet["statements"] / max(1, alone["statements"]), 2),
        "rows_read_3_over_1": round(fleet["rows_read"] / max(1, alone["rows_read"]), 2),
        "fresh_replica_panels": panels,
        "fresh_replica_statements": fresh_statements,
        "fresh_replica_speedup_per_panel_min": round(min(speedups), 1),
        "fresh_replica_speedup_per_panel_median": round(statistics.median(speedups), 1),
        "cached_rps_per_replica_redis_only": round(rps["redis_only"]),
        "cached_rps_per_replica_near_cache": round(rps["near_cache"]),
        "cached_rps_one_replica_in_process": round(rps["in_process"]),
        "cached_rps_ratio_redis_only": round(rps["redis_only"] / rps["in_process"], 2),
        "cached_rps_ratio_near_cache": round(rps["near_cache"] / rps["in_process"], 2),
        "budget_queue": queue,
        "dead_holder_slots_back_s": round(dead_s, 1),
    }


def markdown_lines(fleet: dict[str, Any]) -> list[str]:
    def verdict(met: bool) -> str:
        return "met" if met else "**missed**"

    one, three, queue = fleet["storm_1_replica"], fleet["storm_3_replicas"], fleet["budget_queue"]
    panels = len(fleet["fresh_replica_panels"])
    lowest = fleet["fresh_replica_speedup_per_panel_min"]
    return [
        "## Replicas sharing one Redis (SLS-like set-up, real processes)",
        "",
        f"A refresh storm: {VIEWERS} viewers of a 90-day dashboard ({panels} panels, one per daily "
        f"measure), {ROUNDS} rounds {ROUND_GAP_S:g} s apart (answers with live days cached {CACHE_TTL_S} s), "
        "spread over the replicas.",
        "",
        "| | 1 replica | 3 replicas | 3 / 1 (goal 1.0) |",
        "|---|---|---|---|",
        f"| statements | {one['statements']} | {three['statements']} | {fleet['statements_3_over_1']} "
        f"({verdict(fleet['statements_3_over_1'] <= 1.0)}) |",
        f"| rows read | {one['rows_read']} | {three['rows_read']} | {fleet['rows_read_3_over_1']} "
        f"({verdict(fleet['rows_read_3_over_1'] <= 1.05)}) |",
        "",
        "A fresh replica of the fleet that serves the dashboard, each panel asked alone, against the "
        "same panel asked alone of a replica with nothing cached anywhere "
        f"({fleet['fresh_replica_statements']} statements from the fresh replica; goal >= 50x per panel: "
        f"{verdict(lowest >= 50)}):",
        "",
        "| panel | cold (ms) | fresh replica (ms) | speed-up |",
        "|---|---|---|---|",
        *(
            f"| {panel['panel']} | {panel['cold_ms']} | {panel['fresh_ms']} | {panel['speedup']}x |"
            for panel in fleet["fresh_replica_panels"]
        ),
        "",
        "- Cached answers per second, a replica reading every hit from Redis (near cache off) vs one "
        f"without Redis (medians of 3 rounds, taking turns): {fleet['cached_rps_per_replica_redis_only']} vs "
        f"{fleet['cached_rps_one_replica_in_process']} = **{fleet['cached_rps_ratio_redis_only']}** "
        f"(goal >= 0.8: {verdict(fleet['cached_rps_ratio_redis_only'] >= 0.8)}); with the near cache on, "
        f"as deployed: {fleet['cached_rps_per_replica_near_cache']} = "
        f"{fleet['cached_rps_ratio_near_cache']}.",
        f"- The fleet's budget under a queue: {queue['statements']} statements ({QUEUE_REPLICAS} replicas x "
        f"{QUEUE_WAITERS}) at once for {queue['slots']} slots: **{queue['redis_commands_per_statement']} "
        f"Redis commands per statement** (one freed slot each), {queue['redis_calls_failed']} Redis calls "
        f"failed, {queue['statements_on_a_local_share']} statements on a local share; "
        f"{queue['seconds']} s (floor {queue['floor_seconds']} s).",
        f"- A replica killed while holding every slot: another got one after "
        f"**{fleet['dead_holder_slots_back_s']} s** (goal <= 15 s: "
        f"{verdict(fleet['dead_holder_slots_back_s'] <= 15)}).",
    ]
