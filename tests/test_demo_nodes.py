"""The demo's node executions (app/demo_nodes.py): what `make run` shows in the tracing panel, alone
and split across Dify's tables and the LogStore as a migrating deployment holds it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from app.config import load_settings
from app.demo import demo_apps, generate_rows
from app.embedded import ensure_schema, load_demo
from app.main import create_app
from app.stores.backend import Backend

NOW = datetime(2025, 11, 6, 9, 30, tzinfo=UTC)
SINCE = NOW - timedelta(days=3)
APP = demo_apps()[0]


@pytest.fixture(scope="module")
def demo_url(pg_server: Any) -> str:
    """A database holding a small demo history split at SINCE (Dify's tables have every run; the
    LogStore every version since dual writing began, a week before SINCE)."""
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS dify_stats_demo_nodes")
        admin.execute("CREATE DATABASE dify_stats_demo_nodes")
    url: str = pg_server.get_uri("dify_stats_demo_nodes")
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        load_demo(conn, generate_rows(1500, days=14, now=NOW), SINCE)
    return url


def _client(url: str, **env: str) -> TestClient[Any]:
    settings = load_settings({"STATS_DATABASE_URL": url, **env})
    dify = settings.dify_database_url
    workflow_runs = Backend(dify, settings, dialect="postgres", name="workflow_runs") if dify else None
    return TestClient(app=create_app(settings, Backend(url, settings), workflow_runs))


@pytest.fixture(scope="module")
def logstore_alone(demo_url: str) -> Iterator[TestClient[Any]]:
    with _client(demo_url) as client:
        yield client


@pytest.fixture(scope="module")
def split(demo_url: str) -> Iterator[TestClient[Any]]:
    with _client(
        demo_url, STATS_DIFY_DATABASE_URL=demo_url, STATS_LOGSTORE_SINCE=SINCE.isoformat()
    ) as client:
        yield client


def test_the_demo_writes_what_the_tracing_panel_must_cope_with(demo_url: str) -> None:
    with psycopg.connect(demo_url) as conn:
        versions, long_values, tool_rows, runs = conn.execute(
            "SELECT max(versions), sum(long_values), sum(tool_rows), count(DISTINCT workflow_run_id) FROM ("
            "  SELECT workflow_run_id, count(*) AS versions, count(*) FILTER (WHERE length(outputs) > 2048) "
            "         AS long_values, count(*) FILTER (WHERE triggered_from = 'workflow-tool') AS tool_rows"
            "  FROM workflow_node_execution GROUP BY workflow_run_id, id) AS per_execution"
        ).fetchone() or (0, 0, 0, 0)
        largest = conn.execute(
            "SELECT max(n) FROM (SELECT count(DISTINCT id) AS n FROM workflow_node_execution "
            "GROUP BY workflow_run_id) AS per_run"
        ).fetchone()
        people = conn.execute(
            "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM end_users)"
        ).fetchone()
    assert versions >= 3 and long_values > 0 and tool_rows > 0 and runs > 100
    assert largest is not None and largest[0] >= 20  # an iteration
    assert people is not None and all(count > 0 for count in people)


def test_a_dual_written_run_answers_the_same_from_either_side(
    demo_url: str, logstore_alone: TestClient[Any], split: TestClient[Any]
) -> None:
    """Runs created in the week before SINCE are in both stores: the split deployment reads their
    node executions from Dify's table, the LogStore-alone one from the node LogStore."""
    with psycopg.connect(demo_url) as conn:
        dual = [
            str(row[0])
            for row in conn.execute(
                "SELECT id FROM workflow_runs WHERE tenant_id = %s AND app_id = %s AND created_at < %s "
                "AND finished_at IS NOT NULL AND id IN (SELECT CAST(id AS uuid) FROM workflow_execution) "
                "ORDER BY created_at DESC LIMIT 20",
                (APP.tenant_id, APP.app_id, SINCE.replace(tzinfo=None)),
            )
        ]
    assert dual
    base = f"/v1/tenants/{APP.tenant_id}/apps/{APP.app_id}/runs"
    for run_id in dual:
        alone = logstore_alone.get(f"{base}/{run_id}/node-executions").json()["data"]
        table = split.get(f"{base}/{run_id}/node-executions").json()["data"]
        assert alone, run_id
        shown = ("id", "index", "status", "node_type", "created_at", "finished_at", "outputs", "created_by")
        assert [[item[name] for name in shown] for item in table] == [
            [item[name] for name in shown] for item in alone
        ], run_id
        # the split deployment reads Dify's database, so it names who ran them
        assert all(item["created_by_account"] or item["created_by_end_user"] for item in table), run_id
