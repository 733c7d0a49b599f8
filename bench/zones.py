"""The first request in a time zone against a repeat in the same zone, through the service.

A zone's local days need its UTC offsets over the range (queries/timezones.py). Each of ZONES is
new to the process when its first request arrives: 7 settled days of daily runs. The service runs
without caches (no answer cache, day rollups or kept runs), so the repeats (the same request,
REPEATS times, median) send the very statement the first one sent, and first minus repeat is
what being first in a zone costs: in wall time, and in the serving thread's CPU time, which
holds neither the store's time nor the machine's other load (the target's measure: a loaded
machine moves wall times by tens of ms). While each request runs, a 1 ms timer on the serving
loop records the loop's longest block: how long every other request waited meanwhile, and how
much of that the loop thread spent on the CPU. The first request after start (UTC) too.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import httpx

from app.demo import demo_apps
from app.main import create_app
from app.stores.backend import Backend
from bench.uncached import daily_runs_path, uncached_settings
from tests.live import serve

# DST north and south, +05:30, +05:45, +03:30, -03:30, +12:45 with DST, DST abolished since.
ZONES = (
    "Europe/Paris",
    "America/Chicago",
    "Australia/Adelaide",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tehran",
    "America/St_Johns",
    "Pacific/Chatham",
    "America/Santiago",
    "Europe/Moscow",
    "America/Sao_Paulo",
    "Africa/Cairo",
)
EXTRA_WANT_MS = 5.0  # a first request in a zone costs at most this much more than a repeat
BLOCK_WANT_MS = 10.0  # and never blocks the loop longer than this
TICK_S = 0.001
REPEATS = 3


class LoopWatch:
    """An ASGI wrapper whose task on the serving loop notes the longest gap between 1 ms ticks: in
    wall time (what other requests waited, the machine's other load included) and in the loop
    thread's CPU time (what the service's own code held the loop for)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.longest_s = self.longest_cpu_s = 0.0
        self.task: asyncio.Task[None] | None = None
        self.loop_cpu_clock: int | None = None  # the serving thread's CPU clock, readable from others

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" and self.task is None:
            self.task = asyncio.create_task(self._watch())
            try:
                await self.app(scope, receive, send)
            finally:
                self.task.cancel()
            return
        await self.app(scope, receive, send)

    async def _watch(self) -> None:
        self.loop_cpu_clock = time.pthread_getcpuclockid(threading.get_ident())
        while True:
            started, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(TICK_S)
            self.longest_s = max(self.longest_s, time.perf_counter() - started - TICK_S)
            self.longest_cpu_s = max(self.longest_cpu_s, time.thread_time() - cpu)

    def reset(self) -> None:
        self.longest_s = self.longest_cpu_s = 0.0


class Timed(NamedTuple):
    ms: float  # one uncached answer, wall time
    cpu_ms: float  # the serving thread's CPU time for it (the store's time is not in it)
    block_ms: float  # the loop's longest block meanwhile, wall time
    block_cpu_ms: float  # the same in the loop thread's CPU time


def _timed(client: httpx.Client, watch: LoopWatch, path: str, params: dict[str, str]) -> Timed:
    time.sleep(0.01)  # let the watch tick before the request
    assert watch.loop_cpu_clock is not None
    watch.reset()
    cpu, started = time.clock_gettime(watch.loop_cpu_clock), time.perf_counter()
    answer = client.get(path, params=params)
    elapsed = (time.perf_counter() - started) * 1000
    cpu_ms = (time.clock_gettime(watch.loop_cpu_clock) - cpu) * 1000
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-cache"] == "miss", "every request is measured uncached"
    return Timed(elapsed, cpu_ms, watch.longest_s * 1000, watch.longest_cpu_s * 1000)


def measure(url: str, now_s: int) -> dict[str, Any]:
    settings = uncached_settings(url)
    path = daily_runs_path(demo_apps()[0])
    today = datetime.fromtimestamp(now_s, UTC).date()

    def week(zone: str) -> dict[str, str]:
        end = today - timedelta(days=7)
        return {"start": (end - timedelta(days=7)).isoformat(), "end": end.isoformat(), "timezone": zone}

    watch = LoopWatch(create_app(settings, Backend(url, settings)))
    records: list[dict[str, Any]] = []
    with serve(watch) as base_url, httpx.Client(base_url=base_url, timeout=60) as client:
        after_start = _timed(client, watch, path, week("UTC"))
        for zone in ZONES:
            first = _timed(client, watch, path, week(zone))
            repeats = [_timed(client, watch, path, week(zone)) for _ in range(REPEATS)]
            repeat_ms = statistics.median(one.ms for one in repeats)
            repeat_cpu_ms = statistics.median(one.cpu_ms for one in repeats)
            records.append({
                "zone": zone, "first_ms": round(first.ms, 2), "repeat_ms": round(repeat_ms, 2),
                "extra_ms": round(first.ms - repeat_ms, 2),
                "first_cpu_ms": round(first.cpu_ms, 2), "repeat_cpu_ms": round(repeat_cpu_ms, 2),
                "extra_cpu_ms": round(first.cpu_ms - repeat_cpu_ms, 2),
                "first_block_ms": round(first.block_ms, 2),
                "repeat_block_ms": round(max(one.block_ms for one in repeats), 2),
                "first_block_cpu_ms": round(first.block_cpu_ms, 2),
                "repeat_block_cpu_ms": round(max(one.block_cpu_ms for one in repeats), 2),
            })  # fmt: skip
    extra_cpu = statistics.median(r["extra_cpu_ms"] for r in records)
    longest_cpu = max(r["first_block_cpu_ms"] for r in records)
    return {
        "zones": records,
        "first_after_start_ms": round(after_start.ms, 2),
        "first_after_start_block_ms": round(after_start.block_ms, 2),
        "first_after_start_block_cpu_ms": round(after_start.block_cpu_ms, 2),
        "median_first_ms": round(statistics.median(r["first_ms"] for r in records), 2),
        "median_repeat_ms": round(statistics.median(r["repeat_ms"] for r in records), 2),
        "median_extra_ms": round(statistics.median(r["extra_ms"] for r in records), 2),
        "median_extra_cpu_ms": round(extra_cpu, 2),
        "largest_extra_cpu_ms": max(r["extra_cpu_ms"] for r in records),
        "longest_first_block_ms": max(r["first_block_ms"] for r in records),
        "longest_repeat_block_ms": max(r["repeat_block_ms"] for r in records),
        "longest_first_block_cpu_ms": longest_cpu,
        "longest_repeat_block_cpu_ms": max(r["repeat_block_cpu_ms"] for r in records),
        "met": extra_cpu <= EXTRA_WANT_MS and longest_cpu <= BLOCK_WANT_MS,
    }


def markdown_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        f"## The first request in a time zone ({results.get('size', '?')}, SLS-like)",
        "",
        f"Daily runs over 7 settled days through the service over HTTP, caches off: the first request "
        f"in each of {len(results['zones'])} zones new to the process, then the same request "
        f"{REPEATS} times (median; the very statement again). Its cost in wall time, and in the "
        "serving thread's CPU time (the service's own work: the store's time is not in it, nor the "
        "machine's other load). Block: the serving loop's longest gap between 1 ms ticks while the "
        "request ran, in wall time (what every other request waited) and in the loop thread's CPU "
        "time (what the service's own code held the loop for); a repeat's: the longest of its runs.",
        "",
        "| zone | first / repeat ms | CPU first / repeat ms | CPU first - repeat "
        "| block first / repeat | CPU block first / repeat |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["zones"]:
        lines.append(
            f"| {r['zone']} | {r['first_ms']} / {r['repeat_ms']} "
            f"| {r['first_cpu_ms']} / {r['repeat_cpu_ms']} "
            f"| {r['extra_cpu_ms']} | {r['first_block_ms']} / {r['repeat_block_ms']} "
            f"| {r['first_block_cpu_ms']} / {r['repeat_block_cpu_ms']} |"
        )
    verdict = "met" if results["met"] else "**missed**"
    lines += [
        "",
        f"- A first request in a zone costs **{results['median_extra_cpu_ms']} ms** of the service's CPU "
        f"more than a repeat (median; at most {results['largest_extra_cpu_ms']} ms; target <= "
        f"{EXTRA_WANT_MS:g} ms); its longest CPU block of the loop: "
        f"**{results['longest_first_block_cpu_ms']} ms** (target <= {BLOCK_WANT_MS:g} ms; a repeat's: "
        f"{results['longest_repeat_block_cpu_ms']} ms): {verdict}. In wall time: first - repeat "
        f"{results['median_extra_ms']} ms (median), longest block "
        f"{results['longest_first_block_ms']} ms (a repeat's: {results['longest_repeat_block_ms']} ms).",
        f"- The first request after start (UTC): {results['first_after_start_ms']} ms, its longest "
        f"block {results['first_after_start_block_ms']} ms ({results['first_after_start_block_cpu_ms']} "
        "ms CPU).",
    ]
    return lines
