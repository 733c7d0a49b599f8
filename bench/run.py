"""`make bench`: our plans vs Dify's LogStore SQL, as ratios measured in one run.

Loads seeded demo histories (100 k and 1 M runs over 90 days, COPY) into a pgserver PostgreSQL in
bench/data (reused when already loaded) and copies each into an SLS-like database holding only
the two plain indexes SLS effectively offers (bench/setups.py). On both set-ups (SLS-like first:
the headline; then the project's covering index), for the busiest app, per measure and range,
the median backend time of: our shortcut, our windowed plan, Dify windowed (an exact reader of
the LogStore), Dify actual (the SQL Dify sends; bench/dify_sql.py) and a plain scan of the same
rows (the floor); and how far Dify actual's numbers are from the truth (bench/accuracy.py).
Then, at the largest size on the SLS-like database: Grafana-style dashboard refreshes through
the service (bench/refresh.py; daily runs, runs by status, durations), service time uncached vs
the same SQL run directly, cached throughput vs a bare litestar route, the migration case of two
sources (bench/two_sources.py), and a run's node executions for runs of 10, 1,000 and 10,000 of them
(bench/nodes.py), and a cached answer over one kept-alive connection of a real `serve` process
(bench/keepalive.py). At the smallest size (a zone's cost does not grow with the data, the noise of a
longer statement does): the first request in a time zone against a repeat (bench/zones.py).
At every size: the run export against /runs pages, and the serving process's memory as the
export grows (bench/exports.py).
Finally the performance targets, with where the time goes for each missed one
(bench/targets.py). Writes bench/results.json and bench/RESULTS.md (bench/report.py) and prints
the report. Medians of 3 after a warm-up (2 when a run takes > 1 s). `--only-zones` (like
`--only-fleet`, `--only-keepalive` and `--only-exports`) measures only that part and updates its
figures in results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import load_settings  # noqa: E402
from app.core.measures import DAILY_DURATION, DAILY_MEASURES, DAILY_RUNS, DAILY_STATUS  # noqa: E402
from app.demo import copy_rows, demo_apps, generate_rows  # noqa: E402
from app.embedded import ensure_schema  # noqa: E402
from app.logging import configure_logging  # noqa: E402
from app.main import create_app  # noqa: E402
from app.stores.backend import Backend  # noqa: E402 - after the path set-up above
from bench import (  # noqa: E402
    accuracy,
    dify_sql,
    exports,
    fleet,
    keepalive,
    nodes,
    refresh,
    report,
    targets,
    two_sources,
    zones,
)
from bench.setups import Setup, database, sls_like_database  # noqa: E402
from bench.uncached import daily_runs_path, uncached_settings  # noqa: E402
from queries import counts, daily, runs  # noqa: E402
from queries.runs import RunCursor  # noqa: E402
from queries.scope import Query, RunScope  # noqa: E402
from tests.live import serve  # noqa: E402

DATA = ROOT / "bench" / "data"
SIZES = {"100k": 100_000, "1m": 1_000_000}
RANGES = (1, 7, 30, 90)
REFRESHED = (DAILY_RUNS, DAILY_STATUS, DAILY_DURATION)  # kept runs answer each from different tallies
SESSION_OPTIONS = "-c work_mem=64MB"  # what the service's pool sets; Dify's SQL gets the same
US = 1_000_000
Row = tuple[Any, ...]


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


def timed_run_page(conn: psycopg.Connection[Any], scope: RunScope, after: RunCursor | None) -> float:
    """Milliseconds of one page of 21 runs: one statement, or the shortcut's two."""
    page = runs.run_page(scope, 21, None, after)
    took = timed(conn, page)
    if scope.plan == "shortcut":
        with psycopg.ClientCursor(conn) as cursor:
            cursor.execute(page.sql, page.params)
            keys = [RunCursor(id=str(run_id), created_us=int(us)) for run_id, us in cursor.fetchall()]
        if keys:
            took += timed(conn, runs.run_page_rows(scope, keys))
    return took


def connect(url: str) -> psycopg.Connection[Any]:
    """A session like the service's (client-side binding, its work_mem)."""
    return psycopg.connect(url, autocommit=True, prepare_threshold=None, options=SESSION_OPTIONS)


def dataset(
    admin_url: str, name: str, runs: int, shape: Callable[[Iterable[Row]], Iterable[Row]] = iter
) -> tuple[str, int, float]:
    """(database URL, data 'now' in epoch seconds, load seconds or 0 when reused); `shape`
    rewrites the generated rows (bench/exports.py puts every run in one app)."""
    url = database(admin_url, name)
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
        rows = copy_rows(conn, shape(generate_rows(runs, days=90, seed=7, now=now)))
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
    size: str,
    setup: Setup,
    measure: str,
    days: int | str,
    ours: float,
    windowed: float,
    dify_windowed: float,
    dify_actual: float | None,
    scan: float,
) -> dict[str, Any]:
    return {
        "size": size, "setup": setup, "measure": measure, "days": days,
        "ours_ms": round(ours, 1), "windowed_ms": round(windowed, 1),
        "dify_windowed_ms": round(dify_windowed, 1),
        "dify_actual_ms": round(dify_actual, 1) if dify_actual is not None else None,
        "scan_ms": round(scan, 1),
        "dify_windowed_over_ours": round(dify_windowed / ours, 2),
        "dify_actual_over_ours": round(dify_actual / ours, 2) if dify_actual is not None else None,
        "windowed_over_ours": round(windowed / ours, 2),
        "ours_over_scan": round(ours / scan, 2),
    }  # fmt: skip


def range_scope(now_s: int, days: int) -> RunScope:
    """The busiest app's app-run runs created in the `days` days before the data's now."""
    app = demo_apps()[0]
    return RunScope(
        tenant_id=app.tenant_id,
        app_id=app.app_id,
        triggered_from="app-run",
        start_us=(now_s - days * 86_400) * US,
        end_us=now_s * US,
    )


def dify_params(scope: RunScope) -> dict[str, object]:
    """The scope's values plus the range as both Dify statements bound it: created-time text
    (windowed) and write-time epoch seconds (actual)."""
    assert scope.start_us is not None and scope.end_us is not None
    return {
        **scope.params(),
        "start_iso": _iso(scope.start_us), "end_iso": _iso(scope.end_us),
        "start_s": scope.start_us // US, "end_s": scope.end_us // US,
    }  # fmt: skip


def measure_backend(size: str, setup: Setup, url: str, now_s: int) -> list[dict[str, Any]]:
    app = demo_apps()[0]
    records = []
    with connect(url) as conn:
        for days in RANGES:
            scope = range_scope(now_s, days)
            params = dify_params(scope)
            scan = timed(conn, scan_floor(scope))
            windowed = msgspec.structs.replace(scope, plan="windowed")
            for measure in DAILY_MEASURES:
                ours = timed(conn, daily.daily(scope, "UTC", measure.sql))
                win = timed(conn, daily.daily(windowed, "UTC", measure.sql))
                dify_win = timed(conn, dify_sql.windowed_daily(measure.name, params))
                dify_act = (
                    timed(conn, dify_sql.actual_daily(measure.name, params))
                    if measure.name in dify_sql.ACTUAL_MEASURES
                    else None
                )
                records.append(record(size, setup, measure.name, days, ours, win, dify_win, dify_act, scan))
            ours = timed(conn, counts.status_counts(scope, None))
            win = timed(conn, counts.status_counts(windowed, None))
            dify_win = timed(conn, dify_sql.windowed_status_counts(params))
            dify_act = sum(timed(conn, query) for query in dify_sql.actual_status_counts(params))
            records.append(record(size, setup, "status_counts", days, ours, win, dify_win, dify_act, scan))
            print(f"  {size} {setup} {days:2d} d done", flush=True)
        everything = RunScope(tenant_id=app.tenant_id, app_id=app.app_id, triggered_from="app-run")
        scan = timed(conn, scan_floor(everything))
        params = everything.params()
        for label, offset in (("run_page_first", 0), ("run_page_deep", 1000)):
            after = _cursor_after(conn, everything, offset)
            ours = timed_run_page(conn, everything, after)
            win = timed_run_page(conn, msgspec.structs.replace(everything, plan="windowed"), after)
            dify_win = timed(conn, dify_sql.windowed_run_page(params, offset))
            records.append(record(size, setup, label, "all", ours, win, dify_win, None, scan))
    return records


def measure_accuracy(size: str, url: str, now_s: int) -> list[dict[str, Any]]:
    """Dify actual's numbers against the truth, per measure and range (the same on any set-up)."""
    found = []
    with connect(url) as conn:
        for days in RANGES:
            scope = range_scope(now_s, days)
            found += accuracy.dify_actual_errors(conn, size, scope, dify_params(scope), days)
    return found


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


def measure_overhead(url: str, now_s: int) -> dict[str, Any]:
    """Uncached service time over HTTP vs the same SQL run directly with psycopg (7-day daily runs)."""
    # No kept runs either: the service must send the very statement measured directly.
    settings = uncached_settings(url)
    scope = range_scope(now_s, 7)
    assert scope.start_us is not None and scope.end_us is not None
    direct_query = daily.daily(scope, "UTC", DAILY_RUNS.sql)
    path = daily_runs_path(demo_apps()[0])
    params = {"start": _iso(scope.start_us), "end": _iso(scope.end_us), "timezone": "UTC"}
    with connect(url) as conn:
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
    # logging_config=None: litestar's default would log every request of the bench's own client.
    with (
        serve(Litestar([bare], logging_config=None)) as bare_url,
        serve(create_app(settings, Backend(url, settings))) as ours_url,
    ):
        httpx.get(ours_url + path, timeout=60)  # warm the cache
        figures["bare_rps"] = asyncio.run(_requests_per_second(bare_url, "/bare", 5, 16))
        figures["cached_rps"] = asyncio.run(_requests_per_second(ours_url, path, 5, 16))
    figures = {key: round(value, 0) for key, value in figures.items()}
    figures["cached_over_bare"] = round(figures["cached_rps"] / figures["bare_rps"], 2)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100k,1m", help="comma-separated: 100k, 1m, or run counts")
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from results.json")
    parser.add_argument(
        "--only-fleet", action="store_true", help="measure only the replicas' part (into results.json)"
    )
    parser.add_argument(
        "--only-exports",
        action="store_true",
        help="measure only the run export against /runs pages, at each size (into results.json)",
    )
    parser.add_argument(
        "--only-keepalive",
        action="store_true",
        help="measure only a cached answer over one kept-alive connection (into results.json)",
    )
    parser.add_argument(
        "--only-zones",
        action="store_true",
        help="measure only the first request per time zone, on the smallest size (into results.json)",
    )
    args = parser.parse_args()
    configure_logging("warning")  # the service under test logs only problems, as in production
    if args.report_only:
        text = report.markdown(json.loads((ROOT / "bench" / "results.json").read_text()))
        (ROOT / "bench" / "RESULTS.md").write_text(text)
        print(text)
        return 0
    import pgserver

    DATA.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(DATA / "pg", cleanup_mode="stop")  # type: ignore[attr-defined]
    admin_url: str = server.get_uri()
    smallest = args.sizes.split(",")[0]  # a zone's cost does not grow with the data; noise does
    if args.only_fleet:
        return _only_fleet(admin_url, args.sizes.split(",")[-1])
    if args.only_exports:
        found = _exports(admin_url, args.sizes.split(","))
        return _replace_part("exports", found, exports.markdown_lines(found))
    if args.only_keepalive:
        figures = keepalive.measure(_sls_like(admin_url, smallest))
        return _replace_part("keep_alive", figures, keepalive.markdown_lines(figures))
    if args.only_zones:
        figures = _zones(admin_url, smallest)
        return _replace_part("first_request_per_zone", figures, zones.markdown_lines(figures))
    started = time.monotonic()
    records: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    load_seconds: dict[str, float] = {}
    largest: tuple[str, str, int] | None = None
    for size in args.sizes.split(","):
        runs_wanted = SIZES.get(size) or int(size)
        print(f"{size}: preparing {runs_wanted:,} runs", flush=True)
        url, now_s, seconds = dataset(admin_url, f"bench_{size}", runs_wanted)
        load_seconds[size] = round(seconds, 1)
        sls_url = sls_like_database(admin_url, f"bench_{size}")
        records += measure_backend(size, "sls_like", sls_url, now_s)
        records += measure_backend(size, "covering", url, now_s)
        errors += measure_accuracy(size, url, now_s)
        largest = (size, sls_url, now_s)
    assert largest is not None
    size, sls_url, now_s = largest
    print(f"{size}: service measurements on the SLS-like set-up", flush=True)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{_cpu_count()} cores, PostgreSQL via pgserver",
        "largest": size,
        "records": records,
        "dify_actual_errors": errors,
        "refresh": {
            measure.name: asyncio.run(
                refresh.measure(sls_url, now_s, _dify_90d_ms(records, size, measure.name), measure)
            )
            for measure in REFRESHED
        },
        "overhead": measure_overhead(sls_url, now_s),
        "throughput": measure_throughput(sls_url, now_s),
        "two_sources": asyncio.run(two_sources.measure(sls_url, now_s)),
        "node_executions": nodes.measure(admin_url),
        "fleet": fleet.measure(sls_url),
        "keep_alive": keepalive.measure(sls_url),
        "load_seconds": load_seconds,
    }
    results["first_request_per_zone"] = _zones(admin_url, smallest)
    results["exports"] = _exports(admin_url, args.sizes.split(","))
    with connect(sls_url) as conn:
        results["targets"] = targets.evaluate(results, conn, lambda days: range_scope(now_s, days))
    results["bench_seconds"] = round(time.monotonic() - started)
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report.markdown(results)
    (ROOT / "bench" / "RESULTS.md").write_text(text)
    print(text)
    return 0


def _dify_90d_ms(records: list[dict[str, Any]], size: str, measure: str) -> float:
    found = report.find(records, size, "sls_like", measure, 90)
    assert found is not None
    return float(found["dify_windowed_ms"])


def _zones(admin_url: str, size: str) -> dict[str, Any]:
    """The first request per zone, on the SLS-like copy of the `size` dataset."""
    _, now_s, _ = dataset(admin_url, f"bench_{size}", SIZES.get(size) or int(size))
    return {"size": size, **zones.measure(sls_like_database(admin_url, f"bench_{size}"), now_s)}


def _exports(admin_url: str, sizes: list[str]) -> list[dict[str, Any]]:
    """The export against /runs pages, on the SLS-like copy of a dataset of each size whose runs
    are all of one app and trigger source (an export of all of them)."""
    found = []
    for size in sizes:
        name = f"bench_export_{size}"
        print(f"{size}: the run export against /runs pages", flush=True)
        _, now_s, _ = dataset(admin_url, name, SIZES.get(size) or int(size), exports.one_app)
        found.append(exports.measure(sls_like_database(admin_url, name), now_s, size))
    return found


def _sls_like(admin_url: str, size: str) -> str:
    """The SLS-like copy of the `size` dataset, loaded first if it is not yet."""
    dataset(admin_url, f"bench_{size}", SIZES.get(size) or int(size))
    return sls_like_database(admin_url, f"bench_{size}")


def _only_fleet(admin_url: str, size: str) -> int:
    """Re-measure the replicas' part on an already loaded dataset; the rest of results.json stays."""
    figures = fleet.measure(_sls_like(admin_url, size))
    return _replace_part("fleet", figures, fleet.markdown_lines(figures))


def _replace_part(name: str, figures: dict[str, Any] | list[dict[str, Any]], lines: list[str]) -> int:
    """One part's figures into results.json, the rest of it as it was; prints the part."""
    path = ROOT / "bench" / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results[name] = figures
    path.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))
    return 0


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
