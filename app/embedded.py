"""The embedded default: a pgserver PostgreSQL in STATS_DATA_DIR holding a demo history.

Created and filled on first start only; later starts reuse the data directory as it is.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import structlog

from app.demo import copy_rows, generate_rows

log = structlog.get_logger("dify_stats.embedded")
DEMO_RUNS = 20_000


def start_embedded(data_dir: str, *, demo_runs: int = DEMO_RUNS) -> tuple[Any, str]:
    """Start (or reuse) the embedded server; returns (server handle, connection URL)."""
    try:
        import pgserver
    except ImportError as error:  # installed by the `embedded` extra
        raise RuntimeError(
            "no database configured and the embedded PostgreSQL is not installed: "
            "set STATS_DATABASE_URL, or install dify-stats[embedded]"
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
            rows = copy_rows(conn, generate_rows(demo_runs))
            conn.execute("VACUUM ANALYZE workflow_execution")
            log.info(
                "demo_data_loaded", runs=demo_runs, rows=rows, seconds=round(time.perf_counter() - started, 1)
            )
        elif not empty:
            log.info("embedded_data_reused", data_dir=str(root))
    return server, url


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    conn.execute(resources.files("queries").joinpath("schema.sql").read_text())


def busiest_app(conn: psycopg.Connection[Any]) -> tuple[str, str] | None:
    """The (tenant_id, app_id) with the most app-run rows, to show a newcomer a real URL."""
    row = conn.execute(
        "SELECT tenant_id, app_id FROM workflow_execution WHERE triggered_from = 'app-run' "
        "GROUP BY tenant_id, app_id ORDER BY count(*) DESC, app_id LIMIT 1"
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None
