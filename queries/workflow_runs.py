"""Dify's own `workflow_runs` table (PostgreSQL, one mutable row per run), read as the LogStore.

The row *is* the run's current state, so the measure modules answer it with Dify's own SQL
(`created_at >= start AND created_at < end`, `count(id)`, `count(DISTINCT created_by)`,
`sum(total_tokens)`) beside their LogStore plans. This module says how that table maps onto the
LogStore's columns, so both answer the same rows:
- created_at is a naive UTC timestamp; bounds are bound as naive UTC timestamps (exact to the µs
  and served by Dify's indexes), and the local day uses the same integer offset arithmetic as the
  LogStore (queries/timezones.py) on `date_part('epoch', created_at)`, which reads a naive
  timestamp as UTC whatever the session zone.
- a UUID orders exactly as its canonical lowercase text, which is how the LogStore orders ids.
- text columns come out as the LogStore writes them: ISO-8601 text (`to_char`, independent of
  DateStyle), `''` for NULL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from queries.dialects import ELAPSED_US
from queries.scope import RunScope

WORKFLOW_RUNS_TABLE = "workflow_runs"
CREATED_US = "CAST(round(date_part('epoch', created_at) * 1000000) AS bigint)"
_EPOCH = datetime(1970, 1, 1)


def iso_text(column: str) -> str:
    return f"""coalesce(to_char({column}, 'YYYY-MM-DD"T"HH24:MI:SS.US'), '')"""


# Each LogStore column, read from Dify's table (same names, same text forms).
_COLUMN_SQL = {
    "id": "CAST(id AS text)",
    "tenant_id": "CAST(tenant_id AS text)",
    "app_id": "CAST(app_id AS text)",
    "workflow_id": "CAST(workflow_id AS text)",
    "created_by": "CAST(created_by AS text)",
    "created_at": iso_text("created_at"),
    "started_at": iso_text("created_at"),  # Dify's table has no started_at: a run starts when created
    "finished_at": iso_text("finished_at"),
    "graph": "coalesce(graph, '')",
    "inputs": "coalesce(inputs, '')",
    "outputs": "coalesce(outputs, '')",
    "error_message": "coalesce(error, '')",
    "total_steps": "coalesce(total_steps, 0)",
    "exceptions_count": "coalesce(exceptions_count, 0)",
}


def duration_us_column() -> str:
    """A finished run's duration in µs, as the LogStore's (dialects.duration_us_sql): Dify's table
    always holds elapsed_time (0 by default), read to the microsecond; NULL while unfinished."""
    return f"CASE WHEN finished_at IS NOT NULL THEN {ELAPSED_US} END"


def as_logstore_columns(names: tuple[str, ...]) -> str:
    return ", ".join(f"{_COLUMN_SQL[name]} AS {name}" if name in _COLUMN_SQL else name for name in names)


def naive_utc(us: int) -> datetime:
    """An epoch µs as the naive UTC timestamp Dify stores."""
    return _EPOCH + timedelta(microseconds=us)


def workflow_runs_where(scope: RunScope) -> tuple[str, dict[str, object]]:
    """The scope's rows of Dify's table: tenant, app, trigger source (when given), created range."""
    clauses = ["tenant_id = %(tenant_id)s", "app_id = %(app_id)s"]
    params: dict[str, object] = {"tenant_id": scope.tenant_id, "app_id": scope.app_id}
    if scope.triggered_from is not None:
        clauses.append("triggered_from = %(triggered_from)s")
        params["triggered_from"] = scope.triggered_from
    if scope.start_us is not None:
        clauses.append("created_at >= %(start_at)s")
        params["start_at"] = naive_utc(scope.start_us)
    if scope.end_us is not None:
        clauses.append("created_at < %(end_at)s")
        params["end_at"] = naive_utc(scope.end_us)
    return " AND ".join(clauses), params
