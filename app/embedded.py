"""The embedded default: a pgserver PostgreSQL in STATS_DATA_DIR holding a demo history.

Created and filled on first start only; later starts reuse the data directory as it is.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import structlog

from app.config import ConfigError
from app.demo import copy_rows, copy_workflow_runs, generate_rows, split_rows

log = structlog.get_logger("dify_stats.embedded")
DEMO_RUNS = 20_000


def start_embedded(
    data_dir: str, *, demo_runs: int = DEMO_RUNS, split_at: datetime | None = None
) -> tuple[Any, str]:
    """Start (or reuse) the embedded server; returns (server handle, connection URL).

    With `split_at` (STATS_LOGSTORE_SINCE), a first start loads the demo as a migrating
    deployment holds it: Dify's workflow_runs plus the LogStore (app/demo.split_rows)."""
    try:
        import pgserver
    except ImportError as error:  # installed by the `embedded` extra, not in the Docker image
        raise ConfigError(
            "no database configured and the embedded PostgreSQL is not installed: "
            "set STATS_DATABASE_URL (or STATS_DIFY_DATABASE_URL), or install dify-stats[embedded]"
        ) from error
    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(root / "pg", cleanup_mode="stop")  # type: ignore[attr-defined]
    url: str = server.get_uri()
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM workflow_execution)").fetchone() == (True,)
        if empty and demo_runs:
            started = time.perf_counter()
            rows = load_demo(conn, generate_rows(demo_runs), split_at)
            log.info(
                "demo_data_loaded", runs=demo_runs, rows=rows, split=split_at is not None,
                seconds=round(time.perf_counter() - started, 1),
            )  # fmt: skip
        elif not empty:
            log.info("embedded_data_reused", data_dir=str(root))
    return server, url


def load_demo(
    conn: psycopg.Connection[Any], rows: Iterable[tuple[Any, ...]], split_at: datetime | None
) -> int:
    """COPY a generated history into the LogStore table, or split across both tables; returns
    the number of LogStore rows."""
    if split_at is None:
        count = copy_rows(conn, rows)
    else:
        logstore, workflow_runs = split_rows(rows, split_at)
        count = copy_rows(conn, logstore)
        copy_workflow_runs(conn, workflow_runs)
        conn.execute("VACUUM ANALYZE workflow_runs")
    conn.execute("VACUUM ANALYZE workflow_execution")
    return count


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    """The LogStore table, and Dify's workflow_runs for split demos (empty otherwise)."""
    for name in ("schema.sql", "workflow_runs_schema.sql"):
        conn.execute(resources.files("queries").joinpath(name).read_text())


def busiest_app(conn: psycopg.Connection[Any]) -> tuple[str, str] | None:
    """The (tenant_id, app_id) with the most app-run rows, to show a newcomer a real URL."""
    row = conn.execute(
        "SELECT tenant_id, app_id FROM workflow_execution WHERE triggered_from = 'app-run' "
        "GROUP BY tenant_id, app_id ORDER BY count(*) DESC, app_id LIMIT 1"
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None
