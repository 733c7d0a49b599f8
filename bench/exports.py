"""Exports: GET .../runs/export against reading the same runs through /runs pages, and the
memory of the process serving an export as it grows.

A dataset of the demo's shape whose runs are all of one app and trigger source (`one_app`), so
that an export of its 90 days holds every run (1 M at the largest size); a real
`python -m app serve` process on its SLS-like copy (what is measured is that process: its RSS by
psutil):
- the export as NDJSON, then as CSV, read to the end by one client: runs per second (wall time,
  from the request to the last byte), and the statements the service sent for it (/metrics);
- the server's resident memory before the export (the process's first), then after 10, 25, 50, 75
  and 100 % of the runs had arrived, and its peak (sampled every 20 ms while the export ran);
- /runs pages of 100 (the most a page holds), following `last_id` as a client does: from the
  newest run, and from the middle of the range (the cursor the export's middle run gives), each
  for at most PAGES_SECONDS (reading a million runs this way takes hours): runs per second.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psutil

from app.demo import COLUMNS, demo_apps
from tests.live import wait_until_answering
from tests.processes import Service, cli_env, service

PAGES_SECONDS = 60.0
PAGE_LIMIT = 100
FRACTIONS = (0.10, 0.25, 0.50, 0.75, 1.00)
SAMPLE_EVERY_S = 0.02
SAMPLE_RUNS = 5_000
MB = 1024 * 1024
_STATEMENTS = re.compile(r"^dify_stats_backend_query_seconds_count\{[^}]*\} (\S+)$", re.MULTILINE)


class _Run(msgspec.Struct):
    id: str


def one_app(rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """The demo's rows, every run moved to the busiest demo app and `app-run`."""
    app = demo_apps()[0]
    moved = {
        COLUMNS.index(column): value
        for column, value in (
            ("tenant_id", app.tenant_id), ("app_id", app.app_id), ("workflow_id", app.workflow_id),
            ("triggered_from", "app-run"),
        )
    }  # fmt: skip
    for row in rows:
        yield tuple(moved.get(position, value) for position, value in enumerate(row))


def _iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).replace(tzinfo=None).isoformat()


def _statements(running: Service) -> int:
    text = httpx.get(f"{running.base}/metrics", timeout=30).text
    return int(sum(float(found) for found in _STATEMENTS.findall(text)))


class _PeakRss:
    """The process's largest resident set size while it runs, sampled in a thread."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _export(running: Service, path: str, params: dict[str, str]) -> dict[str, Any]:
    """One export read to its end: runs, seconds, runs/s, statements, the server's RSS before it,
    as each share of the runs had arrived (sampled every SAMPLE_RUNS runs) and at its peak, and
    the id of the run in the middle (where /runs pages are read from)."""
    process = psutil.Process(running.process.pid)
    before = process.memory_info().rss
    statements = _statements(running)
    samples: list[tuple[int, int, str]] = []  # (runs arrived, RSS, the last run's line)
    runs, line = 0, ""
    csv_header = params.get("format") == "csv"
    started = time.perf_counter()
    with (
        _PeakRss(process) as peak,
        httpx.stream("GET", running.base + path, params=params, timeout=600) as answer,
    ):
        assert answer.status_code == 200, answer.read()
        for line in answer.iter_lines():
            if csv_header:
                csv_header = False
                continue
            runs += 1
            if runs % SAMPLE_RUNS == 0:
                samples.append((runs, process.memory_info().rss, line))
    seconds = time.perf_counter() - started
    assert not line.startswith(('{"code"', "#export-incomplete")), line
    samples.append((runs, process.memory_info().rss, line))

    def sample_at(share: float) -> tuple[int, int, str]:
        return min(samples, key=lambda sample: abs(sample[0] - share * runs))

    middle = sample_at(0.5)[2]
    return {
        "runs": runs,
        "seconds": round(seconds, 1),
        "runs_per_s": round(runs / seconds),
        "statements": _statements(running) - statements - 1,  # less the /metrics read itself
        "rss_before_mb": round(before / MB, 1),
        "rss_mb_at": {f"{share:.0%}": round(sample_at(share)[1] / MB, 1) for share in FRACTIONS},
        "rss_peak_mb": round(peak.peak / MB, 1),
        "middle_id": msgspec.json.decode(middle, type=_Run).id if middle.startswith("{") else None,
    }


def _pages(running: Service, base: str, last_id: str | None) -> dict[str, Any]:
    """/runs pages following `last_id` for PAGES_SECONDS: pages, runs, runs/s."""
    params: dict[str, str | int] = {"triggered_from": "app-run", "limit": PAGE_LIMIT}
    if last_id is not None:
        params["last_id"] = last_id
    pages = runs = 0
    started = time.perf_counter()
    with httpx.Client(base_url=running.base, timeout=600) as client:
        while time.perf_counter() - started < PAGES_SECONDS:
            page = client.get(f"{base}/runs", params=params).json()
            pages += 1
            runs += len(page["data"])
            if not page["has_more"]:
                break
            params["last_id"] = page["data"][-1]["id"]
    seconds = time.perf_counter() - started
    return {"pages": pages, "runs": runs, "seconds": round(seconds, 1), "runs_per_s": round(runs / seconds)}


def measure(url: str, now_s: int, size: str) -> dict[str, Any]:
    """Export and pages of the busiest app's 90 days on `url` (SLS-like), through one process."""
    app = demo_apps()[0]
    base = f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}"
    days = {
        "start": _iso(now_s - 90 * 86_400),
        "end": _iso(now_s),
        "timezone": "UTC",
        "triggered_from": "app-run",
    }
    with tempfile.TemporaryDirectory() as home:
        env = cli_env(Path(home), STATS_DATABASE_URL=url, STATS_LOG_LEVEL="warning")
        with service(env) as running:
            wait_until_answering(f"{running.base}/readyz", 120, running.process)
            httpx.get(f"{running.base}{base}/runs", params={"triggered_from": "app-run"}, timeout=120)
            as_ndjson = _export(running, f"{base}/runs/export", days)  # first: a fresh process's RSS
            as_csv = _export(running, f"{base}/runs/export", {**days, "format": "csv"})
            as_csv.pop("middle_id")
            newest = _pages(running, base, None)
            middle = _pages(running, base, as_ndjson.pop("middle_id"))
    rss = as_ndjson["rss_mb_at"]
    return {
        "size": size,
        "ndjson": as_ndjson,
        "csv": as_csv,
        "pages_newest": newest,
        "pages_middle": middle,
        "rss_growth_10_to_100_mb": round(rss["100%"] - rss["10%"], 1),
    }


def markdown_lines(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Exports: GET .../runs/export against /runs pages (SLS-like)",
        "",
        "Every run of a dataset of the demo's shape put in one app and `app-run` (so the 90 days' export "
        "is every run), through a real `serve` process, one client reading to the end: runs per second "
        "from the request to the last byte, and the statements the service sent for it. /runs: pages of "
        f"{PAGE_LIMIT} following `last_id`, from the newest run and from the range's middle, each for at "
        f"most {PAGES_SECONDS:g} s (a page's cost grows with its depth: the middle is the fairer guess of "
        "what paging through everything costs).",
        "",
        "| size | runs | NDJSON s | NDJSON runs/s | CSV runs/s | statements | /runs newest runs/s "
        "| /runs middle runs/s | NDJSON / newest pages | NDJSON / middle pages |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ndjson, csv = r["ndjson"], r["csv"]
        newest, middle = r["pages_newest"]["runs_per_s"], r["pages_middle"]["runs_per_s"]
        lines.append(
            f"| {r['size']} | {ndjson['runs']:,} | {ndjson['seconds']} | {ndjson['runs_per_s']:,} "
            f"| {csv['runs_per_s']:,} | {ndjson['statements']:,} | {newest:,} | {middle:,} "
            f"| {round(ndjson['runs_per_s'] / newest, 1)}x | {round(ndjson['runs_per_s'] / middle, 1)}x |"
        )
    lines += [
        "",
        "Resident memory of the serving process (MB) during the NDJSON export: before it, after each "
        "share of the runs had arrived, and the peak (sampled every 20 ms).",
        "",
        f"| size | before | {' | '.join(f'{share:.0%}' for share in FRACTIONS)} | peak | 100 % - 10 % |",
        "|---|---|" + "---|" * len(FRACTIONS) + "---|---|",
    ]
    for r in results:
        ndjson = r["ndjson"]
        at = " | ".join(str(ndjson["rss_mb_at"][f"{fraction:.0%}"]) for fraction in FRACTIONS)
        lines.append(
            f"| {r['size']} | {ndjson['rss_before_mb']} | {at} | {ndjson['rss_peak_mb']} "
            f"| {r['rss_growth_10_to_100_mb']} |"
        )
    return lines
