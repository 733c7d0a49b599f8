"""`make bench`: our plans vs Dify's windowed LogStore SQL, as ratios measured in one run.

Loads seeded demo histories (100 k and 1 M runs over 90 days, COPY) into a pgserver PostgreSQL in
bench/data (reused when already loaded), then for the busiest app measures, per measure and
range, the median backend time of: our shortcut, our windowed plan, Dify's SQL (bench/dify_sql.py)
and a plain scan of the same rows (the floor). Then, at the largest size: a warm dashboard
refresh through the service (day rollups cached), service time uncached vs the same SQL run
directly, cached throughput vs a bare litestar route, and the migration case of two sources
(bench/two_sources.py). Writes bench/results.json and
bench/RESULTS.md and prints the tables. Medians of 3 after a warm-up (2 when a run takes > 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.backend import Backend  # noqa: E402 - after the path set-up above
from app.cache import AnswerCache  # noqa: E402
from app.config import load_settings  # noqa: E402
from app.demo import copy_rows, demo_apps, generate_rows  # noqa: E402
from app.embedded import ensure_schema  # noqa: E402
from app.logging import configure_logging  # noqa: E402
from app.main import create_app  # noqa: E402
from app.measures import DAILY_MEASURES, DAILY_RUNS  # noqa: E402
from app.repository import StatsRepository  # noqa: E402
from app.service import StatsService  # noqa: E402
from app.sources import build_sources  # noqa: E402
from bench import two_sources  # noqa: E402
from bench.dify_sql import windowed_daily, windowed_run_page, windowed_status_counts  # noqa: E402
from queries import counts, daily, runs  # noqa: E402
from queries.runs import RunCursor  # noqa: E402
from queries.scope import Query, RunScope  # noqa: E402
from schemas.requests import DailyRequest  # noqa: E402
from tests.live import serve  # noqa: E402

DATA = ROOT / "bench" / "data"
SIZES = {"100k": 100_000, "1m": 1_000_000}
RANGES = (1, 7, 30, 90)
SESSION_OPTIONS = "-c work_mem=64MB"  # what the service's pool sets; Dify's SQL gets the same
US = 1_000_000


def timed(conn: psycopg.Connection[Any], query: Query) -> float:
    """Median milliseconds of one query (client-side binding, as the service runs it)."""

    def once() -> float:
        with psycopg.ClientCursor(conn) as cursor:
            started = time.perf_counter()
            cursor.execute(query.sql, query.params)
            cursor.fetchall()
            return (time.perf_counter() - started) * 1000

    first = once()
    repeats = 2 if first > 1000 else 3
    return statistics.median(once() for _ in range(repeats))


def dataset(admin_url: str, name: str, runs: int) -> tuple[str, int, float]:
    """(database URL, data 'now' in epoch seconds, load seconds or 0 when reused)."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            admin.execute(f"CREATE DATABASE {name}")
    url = admin_url.replace("/postgres?", f"/{name}?")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (runs bigint, now_s bigint)")
        meta = conn.execute("SELECT runs, now_s FROM bench_meta").fetchone()
        if meta is not None and meta[0] == runs:
            ensure_schema(conn)  # indexes added since the data was loaded
            conn.execute("VACUUM ANALYZE workflow_execution")
            return url, int(meta[1]), 0.0
        now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        conn.execute("DROP TABLE IF EXISTS workflow_execution, workflow_runs")
        conn.execute("DELETE FROM bench_meta")
        started = time.perf_counter()
        ensure_schema(conn)
        rows = copy_rows(conn, generate_rows(runs, days=90, seed=7, now=now))
        conn.execute("VACUUM ANALYZE workflow_execution")
        seconds = time.perf_counter() - started
        conn.execute("INSERT INTO bench_meta VALUES (%s, %s)", (runs, int(now.timestamp())))
        print(f"  loaded {runs:,} runs ({rows:,} rows) in {seconds:.0f} s", flush=True)
        return url, int(now.timestamp()), seconds


def scan_floor(scope: RunScope) -> Query:
    """A plain scan of the rows the measure reads: no grouping, no parsing."""
    pruning = " AND __time__ >= %(min_time)s" if scope.start_us is not None else ""
    sql = (
        "SELECT count(*), sum(total_tokens) FROM workflow_execution "
        "WHERE tenant_id = %(tenant_id)s AND app_id = %(app_id)s AND triggered_from = %(triggered_from)s"
        f"{pruning}"
    )
    return Query(sql, scope.params())


def record(
    size: str, measure: str, days: int | str, ours: float, windowed: float, dify: float, scan: float
) -> dict[str, Any]:
    return {
        "size": size, "measure": measure, "days": days,
        "ours_ms": round(ours, 1), "windowed_ms": round(windowed, 1),
        "dify_ms": round(dify, 1), "scan_ms": round(scan, 1),
        "dify_over_ours": round(dify / ours, 2), "windowed_over_ours": round(windowed / ours, 2),
        "ours_over_scan": round(ours / scan, 2),
    }  # fmt: skip


def measure_backend(size: str, url: str, now_s: int) -> list[dict[str, Any]]:
    app = demo_apps()[0]
    records = []
    with psycopg.connect(url, autocommit=True, prepare_threshold=None, options=SESSION_OPTIONS) as conn:
        for days in RANGES:
            start, end = (now_s - days * 86_400) * US, now_s * US
            scope = RunScope(
                tenant_id=app.tenant_id,
                app_id=app.app_id,
                triggered_from="app-run",
                start_us=start,
                end_us=end,
            )
            iso = {"start_iso": _iso(start), "end_iso": _iso(end)}
            dify_params = {**scope.params(), **iso}
            scan = timed(conn, scan_floor(scope))
            windowed = msgspec.structs.replace(scope, plan="windowed")
            for measure in DAILY_MEASURES:
                ours = timed(conn, daily.daily(scope, "UTC", measure.sql))
                win = timed(conn, daily.daily(windowed, "UTC", measure.sql))
                dify = timed(conn, windowed_daily(measure.name, dify_params))
                records.append(record(size, measure.name, days, ours, win, dify, scan))
            ours = timed(conn, counts.status_counts(scope, None))
            win = timed(conn, counts.status_counts(windowed, None))
            records.append(
                record(
                    size,
                    "status_counts",
                    days,
                    ours,
                    win,
                    timed(conn, windowed_status_counts(dify_params)),
                    scan,
                )
            )
            print(f"  {size} {days:2d} d done", flush=True)
        everything = RunScope(tenant_id=app.tenant_id, app_id=app.app_id, triggered_from="app-run")
        scan = timed(conn, scan_floor(everything))
        params = everything.params()
        for label, offset in (("run_page_first", 0), ("run_page_deep", 1000)):
            after = _cursor_after(conn, everything, offset)
            ours = timed(conn, runs.run_page(everything, 21, None, after))
            win = timed(
                conn, runs.run_page(msgspec.structs.replace(everything, plan="windowed"), 21, None, after)
            )
            records.append(
                record(size, label, "all", ours, win, timed(conn, windowed_run_page(params, offset)), scan)
            )
    return records


def _iso(us: int) -> str:
    return (datetime(1970, 1, 1) + timedelta(microseconds=us)).isoformat()


def _cursor_after(conn: psycopg.Connection[Any], scope: RunScope, offset: int) -> RunCursor | None:
    """The keyset cursor a client holds after `offset` runs (None for the first page)."""
    if offset == 0:
        return None
    with psycopg.ClientCursor(conn) as cursor:
        query = runs.run_page(scope, offset, None, None)
        cursor.execute(query.sql, query.params)
        last = cursor.fetchall()[-1]
    return RunCursor(created_us=int(last[-1]), id=str(last[0]))


async def measure_service(url: str, now_s: int, dify_90d_ms: float) -> dict[str, Any]:
    """Warm 90-day refresh through the service with day rollups, vs Dify's SQL for 90 days."""
    settings = load_settings({"STATS_DATABASE_URL": url, "STATS_CACHE_TTL": "0"})
    backend = Backend(url, settings)
    await backend.open()
    app = demo_apps()[0]
    service = StatsService(
        StatsRepository(build_sources(settings, backend, None), settings),
        AnswerCache(10_000, 600),
        settings,
        lambda: now_s + 6 * 3600,
    )
    request = DailyRequest(
        tenant_id=app.tenant_id, app_id=app.app_id, triggered_from="app-run", timezone="UTC",
        start_us=(now_s - 90 * 86_400) * US, end_us=now_s * US,
    )  # fmt: skip
    started = time.perf_counter()
    await service.daily(DAILY_RUNS, request)
    cold = (time.perf_counter() - started) * 1000
    warm = []
    for _ in range(7):
        started = time.perf_counter()
        _, outcome = await service.daily(DAILY_RUNS, request)
        warm.append((time.perf_counter() - started) * 1000)
    await backend.close()
    warm_ms = statistics.median(warm)
    return {
        "measure": "daily_runs", "days": 90, "cold_ms": round(cold, 1), "warm_refresh_ms": round(warm_ms, 2),
        "warm_outcome": outcome, "dify_ms": round(dify_90d_ms, 1),
        "dify_over_warm": round(dify_90d_ms / warm_ms, 1),
    }  # fmt: skip


def measure_overhead(url: str, now_s: int) -> dict[str, Any]:
    """Uncached service time over HTTP vs the same SQL run directly with psycopg (7-day daily runs)."""
    settings = load_settings({"STATS_DATABASE_URL": url, "STATS_CACHE_TTL": "0", "STATS_SETTLED_TTL": "0"})
    app = demo_apps()[0]
    start, end = now_s - 7 * 86_400, now_s
    scope = RunScope(
        tenant_id=app.tenant_id,
        app_id=app.app_id,
        triggered_from="app-run",
        start_us=start * US,
        end_us=end * US,
    )
    direct_query = daily.daily(scope, "UTC", DAILY_RUNS.sql)
    path = f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}/statistics/daily-runs"
    params = {"start": _iso(start * US), "end": _iso(end * US), "timezone": "UTC"}
    with psycopg.connect(url, autocommit=True, prepare_threshold=None, options=SESSION_OPTIONS) as conn:
        direct = [timed(conn, direct_query) for _ in range(3)]
    with (
        serve(create_app(settings, Backend(url, settings))) as base_url,
        httpx.Client(base_url=base_url) as client,
    ):
        client.get(path, params=params)
        service = []
        for _ in range(9):
            started = time.perf_counter()
            answer = client.get(path, params=params)
            service.append((time.perf_counter() - started) * 1000)
            assert answer.headers["x-cache"] == "miss", "overhead must be measured uncached"
    direct_ms, service_ms = statistics.median(direct), statistics.median(service)
    return {
        "direct_sql_ms": round(direct_ms, 1),
        "service_ms": round(service_ms, 1),
        "overhead": round(service_ms / direct_ms - 1, 3),
    }


async def _requests_per_second(base_url: str, path: str, seconds: float, clients: int) -> float:
    done = 0
    async with httpx.AsyncClient(base_url=base_url, limits=httpx.Limits(max_connections=clients)) as client:
        until = time.monotonic() + seconds

        async def one_client() -> None:
            nonlocal done
            while time.monotonic() < until:
                answer = await client.get(path)
                assert answer.status_code == 200
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        return done / (time.monotonic() - started)


def measure_throughput(url: str, now_s: int) -> dict[str, Any]:
    """Cached answers vs a bare litestar route returning a constant, same generator, same run."""
    from litestar import Litestar, get

    @get("/bare", sync_to_thread=False)
    def bare() -> dict[str, list[dict[str, object]]]:
        return {"data": [{"date": "2025-03-01", "runs": 12}]}

    settings = load_settings({"STATS_DATABASE_URL": url})
    app = demo_apps()[0]
    start = _iso((now_s - 30 * 86_400) * US)[:10]
    path = f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}/statistics/daily-runs?start={start}&timezone=UTC"
    figures = {}
    with serve(Litestar([bare])) as bare_url, serve(create_app(settings, Backend(url, settings))) as ours_url:
        httpx.get(ours_url + path, timeout=60)  # warm the cache
        figures["bare_rps"] = asyncio.run(_requests_per_second(bare_url, "/bare", 5, 16))
        figures["cached_rps"] = asyncio.run(_requests_per_second(ours_url, path, 5, 16))
    figures = {key: round(value, 0) for key, value in figures.items()}
    figures["cached_over_bare"] = round(figures["cached_rps"] / figures["bare_rps"], 2)
    return figures


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Run {results['when']} on {results['machine']}. Medians; ratios from one run.",
        "",
    ]
    lines += ["## Backend time per measure (busiest app, PostgreSQL stand-in)", ""]
    lines += [
        "| size | measure | days | ours ms | windowed ms | Dify SQL ms | scan ms "
        "| Dify/ours | windowed/ours | ours/scan |"
    ]
    lines += ["|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["records"]:
        lines.append(
            f"| {r['size']} | {r['measure']} | {r['days']} | {r['ours_ms']} | {r['windowed_ms']} "
            f"| {r['dify_ms']} | "
            f"{r['scan_ms']} | {r['dify_over_ours']}x | {r['windowed_over_ours']}x | {r['ours_over_scan']}x |"
        )
    lines += [
        "",
        "`run_page_*` time the plan's page query over the app's whole history. The service first "
        "asks the runs created in the last day (then 8 days) below the cursor, which answers a "
        "busy app's first page without that scan: see `run_list_first_page` under Two sources.",
    ]
    refresh, overhead, throughput = results["warm_refresh"], results["overhead"], results["throughput"]
    lines += ["", "## Service", ""]
    lines.append(
        f"- Warm 90-day dashboard refresh (daily runs, day rollups cached, one live day re-read): "
        f"{refresh['warm_refresh_ms']} ms vs Dify's SQL {refresh['dify_ms']} ms "
        f"= **{refresh['dify_over_warm']}x** "
        f"(cold through the service: {refresh['cold_ms']} ms)."
    )
    lines.append(
        "- Uncached service time vs the same SQL run directly (7-day daily runs): "
        f"{overhead['service_ms']} ms vs "
        f"{overhead['direct_sql_ms']} ms = **{overhead['overhead'] * 100:.1f} %** overhead."
    )
    lines.append(
        "- Cached throughput vs a bare litestar route: "
        f"{throughput['cached_rps']:.0f} vs {throughput['bare_rps']:.0f} "
        f"requests/s = **{throughput['cached_over_bare']}** (16 httpx clients on loopback, 5 s each)."
    )
    loads = ", ".join(
        f"{size} {seconds} s" if seconds else f"{size} reused from bench/data"
        for size, seconds in results["load_seconds"].items()
    )
    lines.append(f"- Loading (COPY, generation and VACUUM included): {loads}.")
    lines += ["", *scaling_lines(results["records"]), "", *target_lines(results)]
    if "two_sources" in results:
        lines += ["", *two_sources.markdown_lines(results["two_sources"])]
    return "\n".join(lines) + "\n"


def _find(records: list[dict[str, Any]], size: str, measure: str, days: int | str) -> dict[str, Any] | None:
    return next((r for r in records if (r["size"], r["measure"], r["days"]) == (size, measure, days)), None)


def scaling_lines(records: list[dict[str, Any]]) -> list[str]:
    """Time vs rows (1m over 100k) and vs days, for our daily-runs shortcut."""
    lines = [
        "## Scaling (our daily-runs shortcut, ms)",
        "",
        "| days | 100k | 1m | 1m / 100k |",
        "|---|---|---|---|",
    ]
    for days in RANGES:
        small, large = _find(records, "100k", "daily_runs", days), _find(records, "1m", "daily_runs", days)
        if small and large:
            ratio = large["ours_ms"] / small["ours_ms"]
            lines.append(f"| {days} | {small['ours_ms']} | {large['ours_ms']} | {ratio:.1f}x |")
    return lines


def target_lines(results: dict[str, Any]) -> list[str]:
    """The issue's targets at 1 M runs, each marked met or missed from the figures above."""
    records = results["records"]
    lines = ["## Targets at 1 M runs", ""]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    for days in (7, 30):
        for measure, want in (("daily_runs", 10), ("daily_terminals", 10), ("daily_interactions", 10),
                              ("daily_token_costs", 3), ("status_counts", 3)):  # fmt: skip
            found = _find(records, "1m", measure, days)
            if found:
                ratio, ok = found["dify_over_ours"], found["dify_over_ours"] >= want
                lines.append(f"- {measure}, {days} d: {ratio}x vs Dify (target {want}x): {verdict(ok)}")
            if found and days in (7, 30):
                ok = found["ours_over_scan"] <= 3
                lines.append(f"  - within 3x of the scan floor: {found['ours_over_scan']}x: {verdict(ok)}")
    refresh = results["warm_refresh"]
    warm = refresh["dify_over_warm"]
    lines.append(f"- warm 90-day refresh >= 100x: {warm}x: {verdict(warm >= 100)}")
    overhead = results["overhead"]["overhead"]
    lines.append(f"- service overhead <= 20 %: {overhead * 100:.1f} %: {verdict(overhead <= 0.2)}")
    share = results["throughput"]["cached_over_bare"]
    lines.append(f"- cached throughput >= half the bare route: {share}: {verdict(share >= 0.5)}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100k,1m", help="comma-separated: 100k, 1m, or run counts")
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from results.json")
    args = parser.parse_args()
    configure_logging("warning")  # the service under test logs only problems, as in production
    if args.report_only:
        report = markdown(json.loads((ROOT / "bench" / "results.json").read_text()))
        (ROOT / "bench" / "RESULTS.md").write_text(report)
        print(report)
        return 0
    import pgserver

    DATA.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(DATA / "pg", cleanup_mode="stop")  # type: ignore[attr-defined]
    admin_url: str = server.get_uri()
    records: list[dict[str, Any]] = []
    load_seconds: dict[str, float] = {}
    largest: tuple[str, int] | None = None
    for size in args.sizes.split(","):
        runs = SIZES.get(size) or int(size)
        print(f"{size}: preparing {runs:,} runs", flush=True)
        url, now_s, seconds = dataset(admin_url, f"bench_{size}", runs)
        load_seconds[size] = round(seconds, 1)
        records += measure_backend(size, url, now_s)
        largest = (url, now_s)
    assert largest is not None
    url, now_s = largest
    dify_90d = next(
        r["dify_ms"] for r in reversed(records) if r["measure"] == "daily_runs" and r["days"] == 90
    )
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{_cpu_count()} cores, PostgreSQL via pgserver",
        "records": records,
        "warm_refresh": asyncio.run(measure_service(url, now_s, dify_90d)),
        "overhead": measure_overhead(url, now_s),
        "throughput": measure_throughput(url, now_s),
        "two_sources": asyncio.run(two_sources.measure(url, now_s)),
        "load_seconds": load_seconds,
    }
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report = markdown(results)
    (ROOT / "bench" / "RESULTS.md").write_text(report)
    print(report)
    return 0


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
