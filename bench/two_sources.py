"""The migration case at the benchmark's largest size.

Dify's `workflow_runs` is filled from the loaded LogStore (the latest version of every run, as a
dual-writing Dify holds it), and STATS_LOGSTORE_SINCE is put 10 days before the data's "now".
For 30-day daily runs and terminals (the range holds the boundary, so terminals unite the
boundary day's users from both sides) and the first run-list page, the median backend time
through the repository of: the LogStore alone, both sources, workflow_runs alone, and Dify's own
PostgreSQL statistics SQL on workflow_runs (what a Dify without LogStore runs today).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from importlib import resources
from typing import Any

import msgspec
import psycopg

from app.config import load_settings
from app.core.measures import DAILY_RUNS, DAILY_TERMINALS
from app.demo import demo_apps
from app.stores.backend import Backend
from app.stores.repository import StatsRepository
from app.stores.sources import build_sources
from queries.scope import Query
from schemas.requests import DailyRequest, RunListRequest

US = 1_000_000
SINCE_DAYS_AGO = 10

# Dify's workflow_runs from the LogStore stand-in: its latest version per run, Dify's column types.
FILL_WORKFLOW_RUNS = """
INSERT INTO workflow_runs
SELECT CAST(id AS uuid), CAST(tenant_id AS uuid), CAST(app_id AS uuid), CAST(workflow_id AS uuid), type,
       triggered_from, version, graph, inputs, status, outputs, nullif(error_message, ''),
       coalesce(elapsed_time, 0), total_tokens, total_steps, created_by_role, CAST(created_by AS uuid),
       CAST(coalesce(nullif(created_at, ''), started_at) AS timestamp),
       CAST(nullif(finished_at, '') AS timestamp), exceptions_count
FROM (
    SELECT DISTINCT ON (id) * FROM workflow_execution ORDER BY id, log_version DESC, __time__ DESC
) AS latest"""

# Dify's PostgreSQL repository (get_daily_runs_statistics / get_daily_terminals_statistics).
DIFY_DAILY_SQL = """
SELECT DATE(DATE_TRUNC('day', created_at AT TIME ZONE 'UTC' AT TIME ZONE %(tz)s)) AS date, {aggregate}
FROM workflow_runs
WHERE tenant_id = %(tenant_id)s AND app_id = %(app_id)s AND triggered_from = %(triggered_from)s
  AND created_at >= %(start_date)s AND created_at < %(end_date)s
GROUP BY date ORDER BY date"""


def fill_workflow_runs(url: str) -> float:
    """Seconds taken; 0 when the table already holds every run.

    Creates only Dify's table: app/embedded.ensure_schema would also put the covering index back
    on workflow_execution, and this runs on the SLS-like database (bench/setups.py)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(resources.files("queries").joinpath("workflow_runs_schema.sql").read_text())
        runs = conn.execute("SELECT count(DISTINCT id) FROM workflow_execution").fetchone()
        have = conn.execute("SELECT count(*) FROM workflow_runs").fetchone()
        if runs == have:
            return 0.0
        started = time.perf_counter()
        conn.execute("TRUNCATE workflow_runs")
        conn.execute(FILL_WORKFLOW_RUNS)
        conn.execute("VACUUM ANALYZE workflow_runs")
        return time.perf_counter() - started


async def _median_ms(work: Callable[[], Awaitable[Any]]) -> float:
    await work()  # warm-up
    times = []
    for _ in range(3):
        started = time.perf_counter()
        await work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def measure(url: str, now_s: int) -> dict[str, Any]:
    fill_seconds = fill_workflow_runs(url)
    since = datetime.fromtimestamp(now_s - SINCE_DAYS_AGO * 86_400, UTC)
    settings = load_settings(
        {"STATS_DATABASE_URL": url, "STATS_DIFY_DATABASE_URL": url, "STATS_LOGSTORE_SINCE": since.isoformat()}
    )
    logstore = Backend(url, settings)
    workflow_runs = Backend(url, settings, dialect="postgres", name="workflow_runs")
    for backend in (logstore, workflow_runs):
        await backend.open()
    one = msgspec.structs.replace(settings, dify_database_url=None, logstore_since=None)
    alone = msgspec.structs.replace(settings, database_url=None, logstore_since=None)
    repositories = {
        "logstore_ms": StatsRepository(build_sources(one, logstore, None), one),
        "two_sources_ms": StatsRepository(build_sources(settings, logstore, workflow_runs), settings),
        "workflow_runs_ms": StatsRepository(build_sources(alone, None, workflow_runs), alone),
    }
    app = demo_apps()[0]
    daily = DailyRequest(
        tenant_id=app.tenant_id, app_id=app.app_id, triggered_from="app-run", timezone="UTC",
        start_us=(now_s - 30 * 86_400) * US, end_us=now_s * US,
    )  # fmt: skip
    page = RunListRequest(
        tenant_id=app.tenant_id,
        app_id=app.app_id,
        triggered_from="app-run",
        status=None,
        limit=20,
        last_id=None,
    )
    records = []
    dify_aggregates = ((DAILY_RUNS, "count(id)"), (DAILY_TERMINALS, "count(DISTINCT created_by)"))
    for measure, aggregate in dify_aggregates:
        record: dict[str, Any] = {"measure": measure.name, "days": 30}
        for name, repository in repositories.items():
            record[name] = round(await _median_ms(partial(repository.daily, measure, daily)), 1)
        dify = Query(
            DIFY_DAILY_SQL.format(aggregate=aggregate),
            {"tz": "UTC", "tenant_id": app.tenant_id, "app_id": app.app_id, "triggered_from": "app-run",
             "start_date": datetime.fromtimestamp(now_s - 30 * 86_400, UTC).replace(tzinfo=None),
             "end_date": datetime.fromtimestamp(now_s, UTC).replace(tzinfo=None)},
        )  # fmt: skip
        record["dify_workflow_runs_ms"] = round(await _median_ms(partial(workflow_runs.fetch, dify, dict)), 1)
        records.append(record)
    first_page: dict[str, Any] = {"measure": "run_list_first_page", "days": "all"}
    for name, repository in repositories.items():
        first_page[name] = round(await _median_ms(partial(repository.run_page, page)), 1)
    records.append(first_page)
    for backend in (logstore, workflow_runs):
        await backend.close()
    return {"since_days_ago": SINCE_DAYS_AGO, "fill_seconds": round(fill_seconds, 1), "records": records}


def markdown_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        f"## Two sources (workflow_runs before now - {results['since_days_ago']} d, the LogStore after)",
        "",
        "| measure | LogStore alone | both sources | workflow_runs alone | Dify's SQL on workflow_runs |",
        "|---|---|---|---|---|",
    ]
    for r in results["records"]:
        dify = r.get("dify_workflow_runs_ms", "—")
        lines.append(
            f"| {r['measure']} ({r['days']} d) | {r['logstore_ms']} | {r['two_sources_ms']} "
            f"| {r['workflow_runs_ms']} | {dify} |"
        )
    return lines


if __name__ == "__main__":  # `python -m bench.two_sources URL NOW_S`: this part alone
    import sys

    print(asyncio.run(measure(sys.argv[1], int(sys.argv[2]))))
