"""A run's node executions, in both dialects and both plans, equal the pure-Python reference on
adversarial histories (tests/node_strategies.py): read page by page as the service reads them,
the sls dialect through the SLS stand-in (its default LIMIT, cut values, shuffled rows)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar.testing import TestClient

from app.demo import copy_rows
from queries.node_executions import NodeKey, NodeScope, node_page
from queries.rows import NodeExecutionRow
from tests import reference
from tests.db import fetch_rows, load_node_history, load_two_sources
from tests.node_strategies import RUN_ID, RunTimes, node_histories, run_times
from tests.reference import EPOCH
from tests.strategies import APPS, USERS

DIALECTS = ("postgres", "sls")
PLANS = ("shortcut", "windowed")
SLACK_S = 3600
STANDIN_TEXT = 2048  # the stand-in cuts longer text values to this many characters
Conns = dict[str, psycopg.Connection[Any]]

pytestmark = pytest.mark.usefixtures("no_statement_relies_on_the_default_limit")


def walk(conn: psycopg.Connection[Any], scope: NodeScope, size: int) -> list[NodeExecutionRow]:
    """Every page, each after the last row of the one before, until one comes back short."""
    found: list[NodeExecutionRow] = []
    after = None
    for _ in range(100):
        page = fetch_rows(conn, node_page(scope, after, size), NodeExecutionRow)
        found += page
        if len(page) < size:
            return found
        after = NodeKey(page[-1].created_key, page[-1].index, page[-1].id)
    raise AssertionError("pagination did not end")


def shown(row: reference.NodeVersion, dialect: str) -> tuple[Any, ...]:
    cut = (lambda text: text[:STANDIN_TEXT]) if dialect == "sls" else (lambda text: text)
    return (
        row.id, row.index, row.status, cut(row.outputs), cut(row.inputs), row.process_data,
        row.execution_metadata, row.error, row.elapsed_time, row.finished_at, row.title,
        row.predecessor_node_id, row.node_id, row.created_at, row.created_by, reference.node_created_key(row),
        reference.iso_to_us(row.finished_at) if row.finished_at else None,
    )  # fmt: skip


def answered(row: NodeExecutionRow) -> tuple[Any, ...]:
    return (
        row.id, row.index, row.status, row.outputs, row.inputs, row.process_data, row.execution_metadata,
        row.error, row.elapsed_time, row.finished_at, row.title, row.predecessor_node_id, row.node_id,
        row.created_at, row.created_by, row.created_key, row.finished_us,
    )  # fmt: skip


@given(data=st.data(), size=st.integers(1, 5), bounded=st.booleans())
def test_node_pages_match_reference(
    dialect_conns: Conns, data: st.DataObject, size: int, bounded: bool
) -> None:
    times = data.draw(run_times())
    history = data.draw(node_histories(times))
    app = data.draw(st.sampled_from(APPS))
    load_node_history(dialect_conns["postgres"], history)
    truth = reference.node_executions(history, app[0], app[1], RUN_ID)
    for dialect in DIALECTS:
        want = [shown(row, dialect) for row in truth]
        for plan in PLANS:
            scope = NodeScope(
                tenant_id=app[0], app_id=app[1], run_id=RUN_ID, dialect=dialect, plan=plan,  # type: ignore[arg-type]
                min_time_s=times.created_us // 1_000_000 - SLACK_S if bounded else None,
                max_time_s=times.last_written_s + SLACK_S if bounded else None,
            )  # fmt: skip
            got = [answered(row) for row in walk(dialect_conns[dialect], scope, size)]
            assert got == want, (dialect, plan)


# --- across the two-source boundary ------------------------------------------------------------

SINCE = datetime(2025, 11, 2, 6, 45, 30, 500_000, tzinfo=UTC)  # STATS_LOGSTORE_SINCE
SINCE_US = (SINCE - EPOCH) // timedelta(microseconds=1)
APP = APPS[0]
TABLE_COLUMNS = (
    "id", "tenant_id", "app_id", "workflow_id", "triggered_from", "workflow_run_id", "index",
    "predecessor_node_id", "node_id", "node_type", "title", "inputs", "process_data", "outputs",
    "status", "error", "elapsed_time", "execution_metadata", "created_at", "created_by_role", "created_by",
    "finished_at",
)  # fmt: skip


def _naive(us: int) -> datetime:
    return (EPOCH + timedelta(microseconds=us)).replace(tzinfo=None)


def table_row(node: reference.NodeVersion) -> tuple[Any, ...]:
    """Dify's workflow_node_executions row holding `node` as the execution's current state."""
    values = {
        **{name: getattr(node, name) or None for name in TABLE_COLUMNS if hasattr(node, name)},
        "index": node.index,
        "elapsed_time": node.elapsed_time or 0.0,
        "created_at": _naive(reference.node_created_key(node)),
        "finished_at": _naive(reference.iso_to_us(node.finished_at)) if node.finished_at else None,
    }
    return tuple(values[name] for name in TABLE_COLUMNS)


def run_versions(times: RunTimes) -> list[reference.Version]:
    """The run RUN_ID of APP: created at `times.created_us`, finished at its last write."""
    created = _naive(times.created_us).isoformat()
    common = {
        "id": RUN_ID, "tenant_id": APP[0], "app_id": APP[1], "workflow_id": APP[1],
        "triggered_from": "app-run", "type": "workflow", "version": "draft", "total_steps": 1,
        "exceptions_count": 0, "elapsed_time": None, "created_by_role": "account", "created_by": USERS[0],
        "created_at": created, "started_at": created,
    }  # fmt: skip
    finished = _naive(times.last_written_s * 1_000_000).isoformat()
    return [
        reference.Version(time=times.created_us // 1_000_000, log_version=1, status="running", total_tokens=0,
                          finished_at="", **common),  # type: ignore[arg-type]
        reference.Version(time=times.last_written_s, log_version=2, status="succeeded", total_tokens=5,
                          finished_at=finished, **common),  # type: ignore[arg-type]
    ]  # fmt: skip


def latest_versions(history: list[reference.NodeVersion]) -> list[reference.NodeVersion]:
    """Each execution's latest version: what Dify's table holds of it."""
    return list({node.id: node for node in sorted(history, key=reference.node_order)}.values())


def first_versions(history: list[reference.NodeVersion]) -> list[reference.NodeVersion]:
    """A stale copy: each execution's earliest version only (what a lagging dual write holds)."""
    first: dict[str, reference.NodeVersion] = {}
    for node in sorted(history, key=lambda node: node.log_version, reverse=True):
        first[node.id] = node
    return list(first.values())


@pytest.fixture(scope="module")
def two_source_client(database_url: str) -> Iterator[TestClient[Any]]:
    from app.config import load_settings
    from app.main import create_app
    from app.stores.backend import Backend

    settings = load_settings(
        {
            "STATS_DATABASE_URL": database_url,
            "STATS_DIFY_DATABASE_URL": database_url,
            "STATS_LOGSTORE_SINCE": SINCE.isoformat(),
            "STATS_CACHE_TTL": "0",
            "STATS_SETTLED_TTL": "0",
        }
    )
    workflow_runs = Backend(database_url, settings, dialect="postgres", name="workflow_runs")
    with TestClient(app=create_app(settings, Backend(database_url, settings), workflow_runs)) as client:
        yield client


@given(
    data=st.data(),
    offset_us=st.sampled_from((-86_400_000_000, -1_000_000, -1, 0, 1, 1_000_000, 86_400_000_000)),
)
def test_node_executions_come_from_the_source_that_owns_the_run(
    pg_conn: psycopg.Connection[Any], two_source_client: TestClient[Any], data: st.DataObject, offset_us: int
) -> None:
    """A run created before STATS_LOGSTORE_SINCE has its node executions in Dify's table, a later
    one in the node LogStore; the other side holds stale dual-written copies, never read."""
    times = RunTimes(
        SINCE_US + offset_us, (SINCE_US + offset_us) // 1_000_000 + data.draw(st.integers(0, 600))
    )
    history = data.draw(node_histories(times, parsable=True))
    logstore_owns = times.created_us >= SINCE_US
    # Both sides hold the run (Dify dual-writes its table); the node side that does not own it
    # holds a stale copy of its node executions.
    load_two_sources(pg_conn, run_versions(times), [run_versions(times)[-1]])
    load_node_history(pg_conn, history if logstore_owns else first_versions(history))
    pg_conn.execute("TRUNCATE workflow_node_executions")
    table = first_versions(history) if logstore_owns else latest_versions(history)
    copy_rows(pg_conn, (table_row(node) for node in table), "workflow_node_executions", TABLE_COLUMNS)

    want = [
        (
            node.id,
            node.index,
            node.status,
            reference.node_created_key(node) // 1_000_000,
            reference.iso_to_us(node.finished_at) // 1_000_000 if node.finished_at else None,
        )
        for node in reference.node_executions(history, APP[0], APP[1], RUN_ID)
    ]
    answer = two_source_client.get(f"/v1/tenants/{APP[0]}/apps/{APP[1]}/runs/{RUN_ID}/node-executions")
    assert answer.status_code == 200, answer.text
    got = [
        (item["id"], item["index"], item["status"], item["created_at"], item["finished_at"])
        for item in answer.json()["data"]
    ]
    assert got == want, "logstore" if logstore_owns else "workflow_runs"
