"""Replicas sharing one Redis, as real `python -m app serve` processes on the SLS-like set-up.

- A Grafana-style refresh storm (viewers refreshing a 90-day dashboard of four panels, round
  after round as answers expire) through 3 replicas and through 1: statements sent (the replicas'
  own counts, /metrics) and rows read (PostgreSQL's table statistics), 3 ÷ 1 (goal 1.0).
- The first answer of a fresh replica for a dashboard the fleet already serves, against the same
  on a cold fleet (goal: at least 50 times faster).
- Cached answers per second through each of 3 replicas with Redis, against 1 replica without
  Redis, per replica (goal ≥ 0.8; each replica answers hits from its own near cache).
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

from app.core.measures import DAILY_MEASURES
from app.demo import demo_apps
from tests.db import locked_table
from tests.live import wait_until_answering
from tests.processes import Service, cli_env, service
from tests.redis_server import start_server

POOL = 4
ROUNDS = 4
VIEWERS = 8
ROUND_GAP_S = 6.0  # answers touching live days are cached STATS_CACHE_TTL = 5 s here
CACHE_TTL_S = "5"
_COUNT = re.compile(r"^dify_stats_backend_query_seconds_count\{[^}]*\} (\S+)$", re.MULTILINE)


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _dashboard(days: int = 90) -> list[tuple[str, dict[str, str]]]:
    """The four panels of a dashboard showing now-`days`d..now."""
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


def _first_dashboard_ms(replica: Service, panels: list[tuple[str, dict[str, str]]]) -> float:
    return max(asyncio.run(_ask([(replica, path, params) for path, params in panels])))


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


def _cached_rps(replicas: list[Service]) -> float:
    """Each replica in turn under the same load: hits per second, averaged over the replicas. The
    range has settled (cached STATS_SETTLED_TTL), so every answer is a hit."""
    path, params = _dashboard(30)[0]
    params = {**params, "start": params["start"][:10], "end": _iso(time.time() - 3 * 86_400)[:10]}
    return statistics.mean(asyncio.run(_per_second(r.base, path, params, 4, 16)) for r in replicas)


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
            with _fleet(url, 3, workdir, STATS_REDIS_PREFIX="three:", **shared) as three:
                statements, dashboard = _storm(three)
                with _fleet(url, 1, workdir, STATS_REDIS_PREFIX="three:", **shared) as (fresh,):
                    warm_ms = _first_dashboard_ms(fresh, dashboard)
                    fresh_statements = _statements([fresh])
                with_redis = _cached_rps(three)
            fleet = {"statements": statements, "rows_read": _rows_read(url) - rows}
            with _fleet(url, 1, workdir, STATS_REDIS_PREFIX="cold:", **shared) as (cold,):
                cold_ms = _first_dashboard_ms(cold, dashboard)
            with _fleet(url, 1, workdir) as (local,):
                in_process = _cached_rps([local])
            with _fleet(url, 2, workdir, STATS_REDIS_PREFIX="dead:", STATS_CACHE_TTL="0", **shared) as pair:
                dead_s = _dead_holder_seconds(url, pair)
        finally:
            redis.stop()
    return {
        "storm_1_replica": alone,
        "storm_3_replicas": fleet,
        "statements_3_over_1": round(fleet["statements"] / max(1, alone["statements"]), 2),
        "rows_read_3_over_1": round(fleet["rows_read"] / max(1, alone["rows_read"]), 2),
        "first_dashboard_cold_fleet_ms": round(cold_ms, 1),
        "first_dashboard_fresh_replica_ms": round(warm_ms, 1),
        "fresh_replica_statements": fresh_statements,
        "fresh_replica_speedup": round(cold_ms / warm_ms, 1),
        "cached_rps_per_replica_with_redis": round(with_redis),
        "cached_rps_one_replica_in_process": round(in_process),
        "cached_rps_ratio": round(with_redis / in_process, 2),
        "dead_holder_slots_back_s": round(dead_s, 1),
    }


def markdown_lines(fleet: dict[str, Any]) -> list[str]:
    def verdict(met: bool) -> str:
        return "met" if met else "**missed**"

    one, three = fleet["storm_1_replica"], fleet["storm_3_replicas"]
    return [
        "## Replicas sharing one Redis (SLS-like set-up, real processes)",
        "",
        f"A refresh storm: {VIEWERS} viewers of a 90-day dashboard (4 panels), {ROUNDS} rounds "
        f"{ROUND_GAP_S:g} s apart (answers with live days cached {CACHE_TTL_S} s), spread over the replicas.",
        "",
        "| | 1 replica | 3 replicas | 3 / 1 (goal 1.0) |",
        "|---|---|---|---|",
        f"| statements | {one['statements']} | {three['statements']} | {fleet['statements_3_over_1']} "
        f"({verdict(fleet['statements_3_over_1'] <= 1.0)}) |",
        f"| rows read | {one['rows_read']} | {three['rows_read']} | {fleet['rows_read_3_over_1']} "
        f"({verdict(fleet['rows_read_3_over_1'] <= 1.05)}) |",
        "",
        f"- First 90-day dashboard (4 panels) of a fresh replica the fleet already serves: "
        f"{fleet['first_dashboard_fresh_replica_ms']} ms and {fleet['fresh_replica_statements']} statements, "
        f"vs {fleet['first_dashboard_cold_fleet_ms']} ms "
        f"on a cold fleet: **{fleet['fresh_replica_speedup']}x** faster (goal >= 50x: "
        f"{verdict(fleet['fresh_replica_speedup'] >= 50)}).",
        f"- Cached answers per second per replica, 3 replicas with Redis vs 1 without: "
        f"{fleet['cached_rps_per_replica_with_redis']} vs {fleet['cached_rps_one_replica_in_process']} = "
        f"**{fleet['cached_rps_ratio']}** (goal >= 0.8: {verdict(fleet['cached_rps_ratio'] >= 0.8)}).",
        f"- A replica killed while holding every slot: another got one after "
        f"**{fleet['dead_holder_slots_back_s']} s** (goal <= 15 s: "
        f"{verdict(fleet['dead_holder_slots_back_s'] <= 15)}).",
    ]
