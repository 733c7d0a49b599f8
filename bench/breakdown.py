"""Where a statement's time goes: its plan's scans of workflow_execution, rows read vs needed.

- rows read: the versions the statement's scans of workflow_execution go through (from
  `EXPLAIN (ANALYZE, BUFFERS)`: rows each scan returns plus those its filters removed), i.e.
  what its `__time__` condition lets in for the app and trigger source;
- rows needed: the versions of the runs created in the statement's range (a count), the least
  any exact plan must read.

Their ratio says whether a missed target is a pruning problem (too many rows read) or a per-row
cost (rows read close to rows needed, time per row too high).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg

from queries.dialects import created_text_sql, epoch_us_sql
from queries.scope import LOGSTORE_TABLE, Query

ROWS_NEEDED = f"""
SELECT count(*) FROM {LOGSTORE_TABLE}
WHERE tenant_id = %(tenant_id)s AND app_id = %(app_id)s AND triggered_from = %(triggered_from)s
  AND __time__ >= %(min_time)s
  AND {epoch_us_sql("postgres", created_text_sql())} >= %(start_us)s
  AND {epoch_us_sql("postgres", created_text_sql())} < %(end_us)s"""


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _nodes(child)


def _rows_through(node: dict[str, Any]) -> int:
    per_loop = (
        node.get("Actual Rows", 0)
        + node.get("Rows Removed by Filter", 0)
        + node.get("Rows Removed by Index Recheck", 0)
    )
    return int(per_loop * node.get("Actual Loops", 1))


def explain(conn: psycopg.Connection[Any], query: Query) -> dict[str, Any]:
    """Execution time; each scan of workflow_execution (kind, index, time, rows, blocks); and
    the time spent above the scans (grouping per run, parsing, grouping per day)."""
    with psycopg.ClientCursor(conn) as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query.sql, query.params)
        found = cursor.fetchone()
    assert found is not None
    plan = found[0] if not isinstance(found[0], str) else json.loads(found[0])
    root = plan[0]
    scans = [
        {
            "node": node["Node Type"],
            "index": _index_of(node),
            "ms": round(node.get("Actual Total Time", 0.0) * node.get("Actual Loops", 1), 1),
            "rows_read": _rows_through(node),
            "blocks": int(node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0)),
        }
        for node in _nodes(root["Plan"])
        if node.get("Relation Name") == LOGSTORE_TABLE
    ]
    execution_ms = root["Execution Time"]
    return {
        "execution_ms": round(execution_ms, 1),
        "scans": scans,
        "above_scans_ms": round(execution_ms - sum(scan["ms"] for scan in scans), 1),
    }


def _index_of(node: dict[str, Any]) -> str | None:
    """The index a scan uses; a bitmap heap scan names it in its bitmap index scan below."""
    return next((found["Index Name"] for found in _nodes(node) if "Index Name" in found), None)


def rows_needed(conn: psycopg.Connection[Any], params: dict[str, object]) -> int | None:
    """Versions of the runs created in the statement's [start_us, end_us); None without both."""
    wanted = ("tenant_id", "app_id", "triggered_from", "min_time", "start_us", "end_us")
    if any(params.get(name) is None for name in wanted):
        return None
    found = conn.execute(ROWS_NEEDED, {name: params[name] for name in wanted}).fetchone()
    return int(found[0]) if found is not None else None


def statement_breakdown(conn: psycopg.Connection[Any], query: Query) -> dict[str, Any]:
    """The statement's plan figures plus rows read and needed. It runs once first, so that the
    plan's times are those of a warm cache, as in the measurements they explain."""
    with psycopg.ClientCursor(conn) as cursor:
        cursor.execute(query.sql, query.params)
        cursor.fetchall()
    figures = explain(conn, query)
    return {
        **figures,
        "rows_read": sum(scan["rows_read"] for scan in figures["scans"]),
        "rows_needed": rows_needed(conn, query.params),
        "range_us": [query.params.get("start_us"), query.params.get("end_us")],
        "min_time": query.params.get("min_time"),
    }
