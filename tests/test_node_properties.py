"""A run's node executions, in both dialects and both plans, equal the pure-Python reference on
adversarial histories (tests/node_strategies.py): read page by page as the service reads them,
the sls dialect through the SLS stand-in (its default LIMIT, cut values, shuffled rows)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from queries.node_executions import NodeKey, NodeScope, node_page
from queries.rows import NodeExecutionRow
from tests import reference
from tests.db import fetch_rows, load_node_history
from tests.node_strategies import RUN_ID, node_histories, run_times
from tests.strategies import APPS

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
    )  # fmt: skip


def answered(row: NodeExecutionRow) -> tuple[Any, ...]:
    return (
        row.id, row.index, row.status, row.outputs, row.inputs, row.process_data, row.execution_metadata,
        row.error, row.elapsed_time, row.finished_at, row.title, row.predecessor_node_id, row.node_id,
        row.created_at, row.created_by, row.created_key,
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
