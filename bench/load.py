"""`make load`: a bounded load test of the real service on loopback.

Starts `python -m app serve` on the embedded default (demo data) on a free port, sends mixed
traffic from concurrent HTTP clients for a fixed time (default 30 s, at most 60 s), stops the
service, and reports requests/s, p50/p99 latency and errors. Exits 1 if any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.demo import demo_apps  # noqa: E402 - after the path set-up above

ZONES = ("UTC", "Asia/Shanghai", "America/New_York", "Asia/Kolkata")
DAILY = ("daily-runs", "daily-terminals", "token-costs", "average-interactions")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def next_request(rng: random.Random) -> tuple[str, str, dict[str, object] | None]:
    """(kind, path, json body or None): a dashboard-like mix of reads."""
    app = rng.choice(demo_apps())
    base = f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}"
    today = datetime.now(UTC).date()
    roll = rng.random()
    if roll < 0.55:
        days = rng.choice((1, 7, 30, 90))
        start = (today - timedelta(days=days)).isoformat()
        zone = rng.choice(ZONES)
        return "daily", f"{base}/statistics/{rng.choice(DAILY)}?start={start}&timezone={zone}", None
    if roll < 0.7:
        return (
            "count",
            f"{base}/runs/count?triggered_from=app-run&time_range={rng.choice(('1d', '7d', '30d'))}",
            None,
        )
    if roll < 0.85:
        return "list", f"{base}/runs?triggered_from=app-run&limit={rng.choice((10, 20, 50))}", None
    now = datetime.now(UTC)
    body: dict[str, object] = {
        "range": {"from": (now - timedelta(days=30)).isoformat(), "to": now.isoformat()},
        "targets": [
            {
                "refId": "A",
                "target": "daily_runs",
                "payload": {"app_id": app.app_id, "timezone": "Asia/Shanghai"},
            },
            {"refId": "B", "target": "runs_by_status", "payload": {"app_id": app.app_id}},
        ],
    }
    return "grafana", "/grafana/query", body


async def worker(
    client: httpx.AsyncClient,
    seed: int,
    until: float,
    latencies: dict[str, list[float]],
    errors: list[str],
    cache: dict[str, int],
) -> None:
    rng = random.Random(seed)  # noqa: S311 - a reproducible traffic mix, not a secret
    while time.monotonic() < until:
        kind, path, body = next_request(rng)
        started = time.perf_counter()
        try:
            answer = await (client.post(path, json=body) if body is not None else client.get(path))
            if answer.status_code != 200:
                errors.append(f"{kind} {answer.status_code}")
            cache[answer.headers.get("x-cache", "none")] += 1
        except httpx.HTTPError as error:
            errors.append(f"{kind} {type(error).__name__}")
        latencies[kind].append((time.perf_counter() - started) * 1000)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


Figures = tuple[dict[str, list[float]], list[str], dict[str, int], float]


async def drive(base_url: str, seconds: float, concurrency: int) -> Figures:
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    cache: dict[str, int] = defaultdict(int)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as client:
        started = time.monotonic()
        until = started + seconds
        await asyncio.gather(
            *(worker(client, seed, until, latencies, errors, cache) for seed in range(concurrency))
        )
        return latencies, errors, cache, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of the load (max 60)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients (default 32)")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 1.0), 60.0)
    port = free_port()
    env = {**os.environ, "STATS_PORT": str(port), "STATS_HOST": "127.0.0.1", "STATS_LOG_LEVEL": "warning"}
    service = subprocess.Popen([sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            print("load: the service did not become ready", file=sys.stderr)
            return 1
        latencies, errors, cache, elapsed = asyncio.run(drive(base_url, seconds, args.concurrency))
    finally:
        service.terminate()
        service.wait(timeout=20)
    everything = [value for values in latencies.values() for value in values]
    print(
        f"\nload: {len(everything)} requests in {elapsed:.1f} s from {args.concurrency} clients on loopback"
    )
    print(f"{'kind':10s} {'requests':>9s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for kind, values in sorted(latencies.items()):
        print(f"{kind:10s} {len(values):9d} {statistics.median(values):8.1f} {percentile(values, 0.99):8.1f}")
    p50, p99 = statistics.median(everything), percentile(everything, 0.99)
    print(f"{'all':10s} {len(everything):9d} {p50:8.1f} {p99:8.1f}")
    print(f"throughput {len(everything) / elapsed:.0f} requests/s, errors {len(errors)}")
    print("cache results:", ", ".join(f"{name} {count}" for name, count in sorted(cache.items())))
    if errors:
        print("first errors:", errors[:10])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
