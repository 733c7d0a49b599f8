"""How far Dify's actual LogStore statistics (bench/dify_sql.py, `actual_*`) are from the truth.

The truth is our shortcut plan's answer with the service's default scope (queries/daily.py and
queries/counts.py, property-tested exact against a reference), converted to values as the
service answers them (app/core/measures.py: interactions rounded to 2 decimals, half-even). Dify's
answer is taken as Dify returns it, its average interactions rounded the same way. Both become
`{UTC date: value}` (counts: `{status: runs}`) and are compared key by key, a key missing on
one side counting as 0 there.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row

from app.core.days import day_number_to_date
from app.core.measures import DAILY_MEASURES, DailyMeasure
from bench.dify_sql import ACTUAL_MEASURES, actual_daily, actual_status_counts
from queries import counts, daily
from queries.rows import DailyRow, StatusCountRow
from queries.scope import Query, RunScope

Values = dict[Any, float]
# The statuses Dify's count answer has (a paused run is in none of them).
DIFY_STATUSES = ("running", "succeeded", "failed", "stopped", "partial-succeeded")


def _rows(conn: psycopg.Connection[Any], query: Query, row_type: type[Any] | None = None) -> list[Any]:
    factory = class_row(row_type) if row_type is not None else None
    with psycopg.ClientCursor(conn, row_factory=factory) as cursor:  # type: ignore[arg-type]
        cursor.execute(query.sql, query.params)
        return cursor.fetchall()


def _rounded(value: Any) -> float:
    return float(Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def true_daily(conn: psycopg.Connection[Any], scope: RunScope, measure: DailyMeasure) -> dict[date, float]:
    """A measure of one value (as Dify's are) per UTC day."""
    rows = _rows(conn, daily.daily(scope, "UTC", measure.sql), DailyRow)
    [field] = measure.fields
    return {
        day_number_to_date(row.day): float(measure.values(row)[field]) for row in rows if row.day is not None
    }


def dify_daily(conn: psycopg.Connection[Any], params: dict[str, object], measure: str) -> dict[date, float]:
    rows = _rows(conn, actual_daily(measure, params))
    if measure == "daily_interactions":
        return {day: _rounded(value) for day, value in rows}
    return {day: float(value or 0) for day, value in rows}


def true_status_counts(conn: psycopg.Connection[Any], scope: RunScope) -> dict[str, float]:
    return {row.status: float(row.runs) for row in _rows(conn, counts.status_counts(scope), StatusCountRow)}


def dify_status_counts(conn: psycopg.Connection[Any], params: dict[str, object]) -> dict[str, float]:
    finished, running = actual_status_counts(params)
    found = {str(status): float(count) for status, count in _rows(conn, finished) if status in DIFY_STATUSES}
    found["running"] = float(_rows(conn, running)[0][0])
    return found


def error(truth: Values, answer: Values) -> dict[str, Any]:
    """Keys whose value differs, the absolute error summed over keys over the true total, and
    the worst key (largest absolute error)."""
    keys = sorted(truth.keys() | answer.keys())
    differences = {key: answer.get(key, 0.0) - truth.get(key, 0.0) for key in keys}
    differing = [key for key in keys if abs(differences[key]) > 1e-9]
    true_total = sum(abs(value) for value in truth.values())
    worst = max(keys, key=lambda key: abs(differences[key])) if keys else None
    return {
        "keys": len(keys),
        "differing": len(differing),
        "differing_share": round(len(differing) / len(keys), 3) if keys else 0.0,
        "abs_error_share": round(sum(abs(d) for d in differences.values()) / true_total, 4)
        if true_total
        else None,
        "worst_key": str(worst) if worst is not None else None,
        "worst_truth": truth.get(worst, 0.0) if worst is not None else None,
        "worst_dify": answer.get(worst, 0.0) if worst is not None else None,
    }


def dify_actual_errors(
    conn: psycopg.Connection[Any], size: str, scope: RunScope, params: dict[str, object], days: int
) -> list[dict[str, Any]]:
    """One record per measure (and status counts) for the range of `scope`."""
    records = []
    for measure in (m for m in DAILY_MEASURES if m.name in ACTUAL_MEASURES):
        found = error(true_daily(conn, scope, measure), dify_daily(conn, params, measure.name))
        records.append({"size": size, "measure": measure.name, "days": days, **found})
    truth, answer = true_status_counts(conn, scope), dify_status_counts(conn, params)
    records.append(
        {"size": size, "measure": "status_counts", "days": days, **error(truth, answer),
         "truth": truth, "dify": answer}
    )  # fmt: skip
    return records
