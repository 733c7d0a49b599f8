"""The tracing panel's endpoint: a run's node executions, for runs of 10, 1,000 and 10,000 node
executions, ours vs Dify's LogStore reader, on the SLS-like set-up.

Runnable on its own (`python bench/nodes.py`, `make bench-nodes`: under a minute, the data kept in
bench/data for the next run; its figures replace the node part of bench/results.json and
RESULTS.md) and part of `make bench`. The data: a week of demo runs of the busiest
app with their node executions (app/demo_nodes.py), plus three finished runs of that app with
exactly 10, 1,000 and 10,000 node executions (an iteration), two to three versions each. SLS-like:
the node LogStore holds only the plain index `(tenant_id, app_id, workflow_run_id, __time__)`, the
run LogStore only its two plain ones.

Per run, medians after a warm-up:
- Dify's reader: the run's lookup, then its statement (ROW_NUMBER() over log_version, then LIMIT
  1000 OFFSET n) page after page until one comes back short, run directly on PostgreSQL (the
  stand-in refuses OFFSET), through the service's own backend; its Python work (models, JSON) is
  not counted;
- ours, statements: the run's lookup and our keyset pages, as the service sends them;
- ours, uncached: the whole answer over HTTP (lookup, pages, people, answer, JSON), cache off;
- ours, cached: the same request answered from the cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import load_settings  # noqa: E402
from app.demo import copy_rows, demo_apps, generate_rows  # noqa: E402
from app.demo_nodes import NODE_LOGSTORE_COLUMNS, DemoRun, load_demo_nodes, node_versions  # noqa: E402
from app.embedded import ensure_schema  # noqa: E402
from app.logging import configure_logging  # noqa: E402
from app.main import create_app  # noqa: E402
from app.metrics import RequestFigures, current_figures  # noqa: E402
from app.stores.backend import Backend  # noqa: E402 - after the path set-up above
from bench.dify_sql import DIFY_NODE_PAGE, node_executions_page, node_run_lookup  # noqa: E402
from bench.setups import database, keep_only_sls_like_indexes  # noqa: E402
from schemas.requests import RunDetailRequest  # noqa: E402
from tests.live import serve  # noqa: E402

DATA = ROOT / "bench" / "data"
DATABASE = "bench_nodes"
SIZES = (10, 1_000, 10_000)
NOW = datetime(2025, 11, 6, 0, 0, tzinfo=UTC)
APP = demo_apps()[0]
USER = ("account", APP.users[0][1])
NODE_INDEX = "workflow_node_execution_run_time"


def run_id(executions: int) -> str:
    return f"{executions:08d}-0000-4000-8000-00000000be0c"


def _target_run(executions: int) -> DemoRun:
    created = (NOW - timedelta(hours=2 + executions % 7)).replace(tzinfo=None)
    return DemoRun(
        run_id(executions), APP.tenant_id, APP.app_id, APP.workflow_id, "succeeded", *USER,
        created_at=created, finished_at=created + timedelta(minutes=10),
    )  # fmt: skip


def _run_rows(run: DemoRun) -> list[tuple[Any, ...]]:
    """The run's own LogStore versions (running, then succeeded), as the demo writes runs."""
    created_s = int(run.created_at.replace(tzinfo=UTC).timestamp())
    assert run.finished_at is not None
    finished_s = int(run.finished_at.replace(tzinfo=UTC).timestamp())
    rows = []
    for position, (status, written) in enumerate((("running", created_s), ("succeeded", finished_s))):
        done = status == "succeeded"
        rows.append((
            written, run.id, created_s * 1_000_000_000 + position, run.tenant_id, run.app_id, run.workflow_id,
            "app-run", APP.type, "draft", "{}", "{}", '{"answer": "ok"}' if done else "", status, "",
            100 if done else 0, 1, 0, 600.0 if done else None, *USER, run.created_at.isoformat(),
            run.created_at.isoformat(), run.finished_at.isoformat() if done else "",
        ))  # fmt: skip
    return rows


def prepare(admin_url: str) -> str:
    """The benchmark's database, made once and reused while its bench_meta says so."""
    url = database(admin_url, DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (sizes text)")
        if conn.execute("SELECT sizes FROM bench_meta").fetchone() == (repr(SIZES),):
            return url
        started = time.perf_counter()
        conn.execute("DROP TABLE IF EXISTS workflow_execution, workflow_node_execution")
        conn.execute("DELETE FROM bench_meta")
        ensure_schema(conn)
        copy_rows(conn, generate_rows(5_000, days=7, seed=11, now=NOW))
        load_demo_nodes(conn, None, seed=11)  # every run's node executions, as the demo writes them
        rng = random.Random(5)  # noqa: S311 - seeded data, not secrets
        targets = [_target_run(size) for size in SIZES]
        copy_rows(conn, [row for run in targets for row in _run_rows(run)])
        copy_rows(
            conn,
            (row for run, size in zip(targets, SIZES, strict=True) for row in node_versions(rng, run, size)),
            "workflow_node_execution",
            NODE_LOGSTORE_COLUMNS,
        )
        keep_only_sls_like_indexes(conn)
        indexes = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'workflow_node_execution'")
        present = {str(row[0]) for row in indexes}
        assert present == {NODE_INDEX}, present  # the plain index only: SLS-like
        conn.execute("VACUUM ANALYZE workflow_execution")
        conn.execute("VACUUM ANALYZE workflow_node_execution")
        conn.execute("INSERT INTO bench_meta VALUES (%s)", (repr(SIZES),))
        rows = conn.execute("SELECT count(*) FROM workflow_node_execution").fetchone()
        print(
            f"  nodes: loaded {rows[0] if rows else 0:,} node rows in {time.perf_counter() - started:.0f} s"
        )
    return url


async def _median_ms(measure: Callable[[], Awaitable[float]], repeats: int = 5) -> float:
    await measure()  # warm-up
    return statistics.median([await measure() for _ in range(repeats)])


async def _backend_figures(url: str) -> dict[int, dict[str, float]]:
    """Per run size: Dify's statements and ours, through the service's own backend."""
    from app.stores.node_logstore import NodeLogstore
    from app.stores.node_repository import NodeExecutionRepository
    from app.stores.people import PeopleReader
    from app.stores.sources import build_sources

    settings = load_settings({"STATS_DATABASE_URL": url})
    backend = Backend(url, settings)
    await backend.open()
    sources = build_sources(settings, backend, None)
    repository = NodeExecutionRepository(sources, settings, NodeLogstore(), PeopleReader(None))
    try:
        return {size: await _run_figures(backend, repository, size) for size in SIZES}
    finally:
        await backend.close()


async def _run_figures(backend: Backend, repository: Any, size: int) -> dict[str, float]:
    request = RunDetailRequest(tenant_id=APP.tenant_id, app_id=APP.app_id, run_id=run_id(size))
    params: dict[str, object] = {"tenant_id": APP.tenant_id, "app_id": APP.app_id, "run_id": run_id(size)}
    statements = [0]

    async def dify() -> float:
        started, offset = time.perf_counter(), 0
        assert len(await backend.fetch(node_run_lookup(params), dict)) == 1
        statements[0] = 1
        while True:
            page = await backend.fetch(node_executions_page(params, offset), dict)
            offset, statements[0] = offset + len(page), statements[0] + 1
            if len(page) < DIFY_NODE_PAGE:
                assert offset == size, (offset, size)
                return (time.perf_counter() - started) * 1000

    async def ours() -> float:
        spent = RequestFigures()
        token = current_figures.set(spent)
        try:
            found = await repository.read(request)
        finally:
            current_figures.reset(token)
        assert found is not None and len(found.answer.data) == size
        return spent.backend_ms

    repeats = 5 if size > 1_000 else 15  # small runs take a millisecond or two: more repeats
    dify_ms = await _median_ms(dify, repeats)
    return {
        "dify_sql_ms": dify_ms,
        "dify_statements": statements[0],
        "ours_sql_ms": await _median_ms(ours, repeats),
    }


def _http_ms(client: httpx.Client, path: str, expect: str, repeats: int = 5) -> float:
    timings = []
    client.get(path)  # warm-up (and, cached, the miss that fills the entry)
    for _ in range(repeats):
        started = time.perf_counter()
        answer = client.get(path)
        timings.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200 and answer.headers["x-cache"] == expect, answer.headers
    return statistics.median(timings)


def measure(admin_url: str) -> list[dict[str, Any]]:
    url = prepare(admin_url)
    backend = asyncio.run(_backend_figures(url))
    paths = {
        size: f"/v1/tenants/{APP.tenant_id}/apps/{APP.app_id}/runs/{run_id(size)}/node-executions"
        for size in SIZES
    }
    service: dict[int, dict[str, float]] = {size: {} for size in SIZES}
    for label, env, expect in (
        ("service_uncached_ms", {"STATS_CACHE_TTL": "0", "STATS_SETTLED_TTL": "0"}, "miss"),
        ("service_cached_ms", {}, "hit"),
    ):
        settings = load_settings({"STATS_DATABASE_URL": url, **env})
        with (
            serve(create_app(settings, Backend(url, settings))) as base,
            httpx.Client(base_url=base, timeout=120) as client,
        ):
            for size in SIZES:
                service[size][label] = _http_ms(client, paths[size], expect)
    records = []
    for size in SIZES:
        found = {**backend[size], **service[size]}
        dify = found["dify_sql_ms"]
        records.append({
            "node_executions": size,
            **{key: round(value, 1) for key, value in found.items()},
            "dify_over_ours_sql": round(dify / found["ours_sql_ms"], 1),
            "dify_over_ours_uncached": round(dify / found["service_uncached_ms"], 1),
            "dify_over_ours_cached": round(dify / found["service_cached_ms"], 1),
        })  # fmt: skip
    return records


def markdown_lines(records: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## A run's node executions (the tracing panel), SLS-like set-up (ms)",
        "",
        "One finished run of the busiest app with that many node executions (2-3 versions each) among a "
        "week of demo runs and their nodes; the node LogStore with only its plain index. Dify's reader: "
        "the run's lookup, then ROW_NUMBER() over log_version in pages of 1,000 by OFFSET; its statements "
        "only (its Python work not counted). Ours: the run's lookup and our keyset pages; the whole answer "
        "over HTTP uncached; the same from the cache. A run of 10 takes a millisecond or two either way (its "
        "ratios are noise); at 10,000 Dify's reader ranks every version once per page of 1,000, ours once.",
        "",
        "| node executions | Dify statements | Dify ms | ours: statements | ours: uncached | ours: cached "
        "| Dify/ours statements | Dify/ours uncached | Dify/ours cached |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['node_executions']:,} | {r['dify_statements']:.0f} | {r['dify_sql_ms']} "
            f"| {r['ours_sql_ms']} "
            f"| {r['service_uncached_ms']} | {r['service_cached_ms']} | {r['dify_over_ours_sql']}x "
            f"| {r['dify_over_ours_uncached']}x | {r['dify_over_ours_cached']}x |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args()
    configure_logging("warning")
    import pgserver

    from bench import report

    DATA.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(DATA / "pg", cleanup_mode="stop")  # type: ignore[attr-defined]
    records = measure(server.get_uri())
    # Into the last full run's figures (the rest of results.json stays), and its report.
    path = ROOT / "bench" / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["node_executions"] = records
    path.write_text(json.dumps(results, indent=2) + "\n")
    if "records" in results:
        (ROOT / "bench" / "RESULTS.md").write_text(report.markdown(results))
    print("\n".join(markdown_lines(records)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
