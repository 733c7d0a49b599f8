"""`make load`: a bounded load test of the real service on loopback.

Starts `python -m app serve` on the embedded default (demo data) in a data directory of its own
(LOAD_DATA_DIR: the outage below stops its PostgreSQL, which must not be the one a running `make
run` serves from `.stats-data`) on a free port, sends mixed
traffic from concurrent HTTP clients for a fixed time (default 30 s, at most 60 s), stops the
service, and reports requests/s, p50/p99 latency and errors. Exits 1 if any request failed.

`--hostile` (what `make load` runs after the ordinary mix) then measures, on the same service:
1. a hostile mix for `--seconds`: slow clients trickling a request header byte by byte, one
   tenant flooding 400-day ranges, while a second tenant's ordinary traffic and /healthz are
   timed (the second tenant's errors are the figure that matters; the flood's 503s are expected);
2. an outage: the embedded PostgreSQL is stopped, and the time until requests fail fast (the
   reaction time) and, once it is started again, until an uncached request answers 200 (the
   recovery time). Every loop is bounded in count and time; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.demo import demo_apps  # noqa: E402 - after the path set-up above

ZONES = ("UTC", "Asia/Shanghai", "America/New_York", "Asia/Kolkata")
LOAD_DATA_DIR = ROOT / ".stats-data-load"
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
    choose: Callable[[random.Random], tuple[str, str, dict[str, object] | None]] = next_request,
) -> None:
    rng = random.Random(seed)  # noqa: S311 - a reproducible traffic mix, not a secret
    while time.monotonic() < until:
        kind, path, body = choose(rng)
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


SLOW_CLIENTS = 50
FLOOD_CLIENTS = 200
QUIET_CLIENTS = 8


async def slow_client(port: int, until: float) -> None:
    """Opens a connection and sends a request header one byte every 0.5 s, until `until`."""
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 1000
    try:
        for byte in header:
            if time.monotonic() >= until:
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.5)
    except OSError:
        pass
    finally:
        writer.close()


def flood_request(rng: random.Random, tenant: str, apps: list[str]) -> str:
    """A 400-day range of the flooding tenant, varied so that most miss the cache."""
    end = datetime.now(UTC).date() - timedelta(days=rng.randrange(0, 30))
    start = end - timedelta(days=399)
    zone = rng.choice(ZONES)
    return (
        f"/v1/tenants/{tenant}/apps/{rng.choice(apps)}/statistics/{rng.choice(DAILY)}"
        f"?start={start.isoformat()}&end={end.isoformat()}&timezone={zone}"
    )


async def flooder(client: httpx.AsyncClient, seed: int, until: float, statuses: dict[int, int]) -> None:
    rng = random.Random(seed)  # noqa: S311 - a reproducible traffic mix, not a secret
    tenant = demo_apps()[0].tenant_id
    apps = [app.app_id for app in demo_apps() if app.tenant_id == tenant]
    while time.monotonic() < until:
        try:
            answer = await client.get(flood_request(rng, tenant, apps))
            statuses[answer.status_code] += 1
        except httpx.HTTPError:
            statuses[0] += 1


async def health_poller(client: httpx.AsyncClient, until: float, latencies: list[float]) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            await client.get("/healthz", timeout=10)
        except httpx.HTTPError:
            latencies.append(10_000.0)
        else:
            latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.2)


def quiet_request(rng: random.Random) -> tuple[str, str, dict[str, object] | None]:
    """The second tenant's ordinary mix (native routes only)."""
    while True:
        kind, path, body = next_request(rng)
        if body is None and demo_apps()[0].tenant_id not in path:
            return kind, path, body


async def hostile_mix(base_url: str, port: int, seconds: float) -> dict[str, object]:
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    cache: dict[str, int] = defaultdict(int)
    flood: dict[int, int] = defaultdict(int)
    health: list[float] = []
    until = time.monotonic() + seconds
    flood_limits = httpx.Limits(max_connections=FLOOD_CLIENTS)
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30, limits=flood_limits) as flood_client,
        httpx.AsyncClient(base_url=base_url, timeout=30) as quiet_client,
        httpx.AsyncClient(base_url=base_url, timeout=10) as health_client,
    ):
        await asyncio.gather(
            *(slow_client(port, until) for _ in range(SLOW_CLIENTS)),
            *(flooder(flood_client, seed, until, flood) for seed in range(FLOOD_CLIENTS)),
            *(worker(quiet_client, 1000 + seed, until, latencies, errors, cache, quiet_request)
              for seed in range(QUIET_CLIENTS)),
            health_poller(health_client, until, health),
        )  # fmt: skip
    quiet = [value for values in latencies.values() for value in values]
    return {
        "quiet_requests": len(quiet),
        "quiet_p50_ms": round(statistics.median(quiet), 1) if quiet else None,
        "quiet_p99_ms": round(percentile(quiet, 0.99), 1) if quiet else None,
        "quiet_errors": len(errors),
        "quiet_first_errors": errors[:5],
        "flood_statuses": dict(flood),
        "healthz_max_ms": round(max(health), 1) if health else None,
        "healthz_p99_ms": round(percentile(health, 0.99), 1) if health else None,
    }


def outage(base_url: str) -> dict[str, object]:
    """Stop the embedded PostgreSQL under the service, then start it again; bounded waits."""
    import pgserver  # the embedded extra, installed by `make`

    data = LOAD_DATA_DIR / "pg"
    app = demo_apps()[2]
    base = f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}"
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGINT)  # PostgreSQL's fast shutdown: sessions end at once
    for _ in range(100):  # at most 10 s
        if not (data / "postmaster.pid").exists():
            break
        time.sleep(0.1)
    stopped = time.monotonic()
    answers = []
    for n in range(10):  # distinct, uncached ranges
        started = time.monotonic()
        status = httpx.get(f"{base_url}{base}/runs/count?time_range={n + 40}d", timeout=60).status_code
        answers.append((status, round((time.monotonic() - started) * 1000)))
    reaction = answers[0][1]
    started = time.monotonic()
    ready = httpx.get(f"{base_url}/readyz", timeout=10)
    ready_ms = round((time.monotonic() - started) * 1000)
    down_for = time.monotonic() - stopped
    _restarted = pgserver.get_server(data, cleanup_mode="stop")  # type: ignore[attr-defined]
    back = time.monotonic()
    recovered = None
    for n in range(300):  # at most 300 x 0.1 s
        if httpx.get(f"{base_url}{base}/runs/count?time_range={n + 100}d", timeout=60).status_code == 200:
            recovered = round(time.monotonic() - back, 2)
            break
        time.sleep(0.1)
    return {
        "first_request_ms": reaction,
        "next_requests_max_ms": max(ms for _, ms in answers[1:]),
        "statuses_while_down": sorted({status for status, _ in answers}),
        "readyz_while_down": (ready.status_code, ready_ms),
        "down_for_s": round(down_for, 1),
        "recovery_s": recovered,
    }


def service_env(port: int) -> dict[str, str]:
    """The service's environment: the embedded default in LOAD_DATA_DIR, whatever the caller's."""
    inherited = {
        name: value for name, value in os.environ.items() if not name.startswith(("STATS_", "ALIYUN_SLS_"))
    }
    return {**inherited, "STATS_DATA_DIR": str(LOAD_DATA_DIR), "STATS_PORT": str(port),
            "STATS_HOST": "127.0.0.1", "STATS_LOG_LEVEL": "warning"}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of the load (max 60)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--hostile", action="store_true", help="then the hostile mix and an outage")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 1.0), 60.0)
    port = free_port()
    service = subprocess.Popen([sys.executable, "-m", "app", "serve"], cwd=ROOT, env=service_env(port))
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
        if args.hostile:
            mix = asyncio.run(hostile_mix(base_url, port, seconds))
            print(
                f"\nhostile mix ({seconds:.0f} s): {SLOW_CLIENTS} slow clients, {FLOOD_CLIENTS} "
                f"clients flooding 400-day ranges of one tenant, {QUIET_CLIENTS} of other tenants"
            )
            for name, value in mix.items():
                print(f"  {name}: {value}")
            print("outage (embedded PostgreSQL stopped, then started):")
            for name, value in outage(base_url).items():
                print(f"  {name}: {value}")
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
