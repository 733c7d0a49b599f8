"""The embedded default: a pgserver PostgreSQL in STATS_DATA_DIR holding a demo history.

Created and filled on first start only; later starts reuse the data directory as it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import warnings
from collections.abc import Iterable
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import structlog

from app.config import ConfigError
from app.demo import copy_rows, copy_workflow_runs, generate_rows, split_rows
from app.demo_messages import load_demo_messages
from app.demo_nodes import load_demo_nodes

log = structlog.get_logger("dify_stats.embedded")
DEMO_RUNS = 20_000
HANDLE_LIST = ".handle_pids.json"  # pgserver's list of the pids holding a handle


def start_embedded(
    data_dir: str, *, demo_runs: int = DEMO_RUNS, split_at: datetime | None = None
) -> tuple[Any, str]:
    """Start (or reuse) the embedded server; returns (server handle, connection URL).

    With `split_at` (STATS_LOGSTORE_SINCE), a first start loads the demo as a migrating
    deployment holds it: Dify's workflow_runs plus the LogStore (app/demo.split_rows)."""
    try:
        with warnings.catch_warnings():
            # pgserver picks its lock directory with platformdirs as it is imported, which warns
            # wherever XDG_RUNTIME_DIR is unset (containers, CI, ssh) and falls back to
            # /tmp/runtime-<uid>: a fine place for it, so that warning is noise to our users.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR", module="platformdirs")
            import pgserver
    except ImportError as error:  # installed by the `embedded` extra, not in the Docker image
        raise ConfigError(
            "no database configured and the embedded PostgreSQL is not installed: "
            "set STATS_DATABASE_URL (or STATS_DIFY_DATABASE_URL), or install dify-stats[embedded]"
        ) from error
    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    forget_dead_handles(root / "pg")
    try:
        server = pgserver.get_server(root / "pg", cleanup_mode="stop")  # type: ignore[attr-defined]
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        raise ConfigError(
            f"the embedded PostgreSQL in {root / 'pg'} did not start; its log: {root / 'pg' / 'log'}"
        ) from None
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
            no_nodes = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM workflow_node_execution)").fetchone()
            if no_nodes == (True,):  # a data directory from before node executions
                rows = load_demo_nodes(conn, split_at)
                log.info("demo_node_executions_loaded", rows=rows)
            no_messages = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM messages)").fetchone()
            if no_messages == (True,):  # a data directory from before chat messages
                log.info("demo_messages_loaded", rows=load_demo_messages(conn))
    return server, url


def forget_dead_handles(pgdata: Path) -> None:
    """pgserver stops its PostgreSQL when the last process holding a handle lets go of it (at
    exit). A process killed outright (SIGKILL, OOM) leaves its pid in the handle list, and the
    server would then never be stopped; so pids of processes that no longer exist are dropped
    before a new handle is taken."""
    handles = pgdata / HANDLE_LIST
    if not handles.exists():
        return
    from pgserver.postgres_server import PostgresServer

    with PostgresServer._lock:  # the lock pgserver itself takes around the handle list
        pids = json.loads(handles.read_text() or "[]")
        alive = [pid for pid in pids if _process_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))
            log.info("embedded_stale_handles_dropped", pids=len(pids) - len(alive))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def stop_embedded(server: Any) -> None:
    """Let go of this process's handle; the last one out stops the embedded PostgreSQL."""
    server.cleanup()


def load_demo(
    conn: psycopg.Connection[Any], rows: Iterable[tuple[Any, ...]], split_at: datetime | None
) -> int:
    """COPY a generated history into the LogStore table, or split across both tables, with the
    runs' node executions (app/demo_nodes.py) and the chat messages of chatflow runs
    (app/demo_messages.py); returns the number of LogStore run rows."""
    if split_at is None:
        count = copy_rows(conn, rows)
    else:
        logstore, workflow_runs = split_rows(rows, split_at)
        count = copy_rows(conn, logstore)
        copy_workflow_runs(conn, workflow_runs)
        conn.execute("VACUUM ANALYZE workflow_runs")
    conn.execute("VACUUM ANALYZE workflow_execution")
    load_demo_nodes(conn, split_at)
    load_demo_messages(conn)
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
