"""Raw query rows to answer structs: pure functions shared by the service and the tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from queries.runs import DETAIL_COLUMNS, SUMMARY_COLUMNS
from queries.timezones import day_number_to_date, to_epoch_us
from schemas.runs import RunCounts, RunDetail, RunSummary
from schemas.statistics import DailyInteractions, DailyRuns, DailyTerminals, DailyTokenCosts

__all__ = [
    "DailyInteractions",
    "DailyRuns",
    "DailyTerminals",
    "DailyTokenCosts",
    "RunCounts",
    "RunDetail",
    "RunSummary",
]

Row = Sequence[Any]
_HUNDREDTH = Decimal("0.01")


def _day(day_number: int) -> str:
    return day_number_to_date(day_number).isoformat()


def daily_runs(rows: Sequence[Row]) -> list[DailyRuns]:
    return [DailyRuns(date=_day(day), runs=int(runs)) for day, runs in rows]


def daily_terminals(rows: Sequence[Row]) -> list[DailyTerminals]:
    return [DailyTerminals(date=_day(day), terminal_count=int(users)) for day, users in rows]


def daily_token_costs(rows: Sequence[Row]) -> list[DailyTokenCosts]:
    return [DailyTokenCosts(date=_day(day), token_count=int(tokens or 0)) for day, tokens in rows]


def interactions(runs: int, users: int) -> float:
    """runs / distinct users, rounded to 2 decimals half-even: exactly Dify's average of per-user
    run counts, computed on integers so no float rounding creeps in."""
    return float((Decimal(int(runs)) / Decimal(int(users))).quantize(_HUNDREDTH, rounding=ROUND_HALF_EVEN))


def daily_interactions(rows: Sequence[Row]) -> list[DailyInteractions]:
    return [
        DailyInteractions(date=_day(day), interactions=interactions(runs, users)) for day, runs, users in rows
    ]


def run_counts(rows: Sequence[Row]) -> RunCounts:
    by_status: dict[str, int] = {}
    for status, count in rows:  # a status may come once per source
        by_status[str(status)] = by_status.get(str(status), 0) + int(count)
    return RunCounts(
        total=sum(by_status.values()),
        running=by_status.get("running", 0),
        succeeded=by_status.get("succeeded", 0),
        failed=by_status.get("failed", 0),
        stopped=by_status.get("stopped", 0),
        partial_succeeded=by_status.get("partial-succeeded", 0),
    )


def iso_to_epoch_us(text: str) -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_epoch_us(moment)


def _epoch_seconds(text: str) -> int | None:
    return iso_to_epoch_us(text) // 1_000_000 if text else None


def _elapsed(elapsed_time: float | None, started_at: str, finished_at: str) -> float:
    """elapsed_time as written; when NULL, finished - started, or 0 while unfinished."""
    if elapsed_time is not None:
        return float(elapsed_time)
    if not finished_at or not started_at:
        return 0.0
    return (iso_to_epoch_us(finished_at) - iso_to_epoch_us(started_at)) / 1_000_000


def _summary_fields(row: dict[str, Any]) -> dict[str, Any]:
    created_text = row["created_at"] or row["started_at"]
    return {
        "id": row["id"],
        "version": row["version"],
        "status": row["status"],
        "elapsed_time": _elapsed(row["elapsed_time"], row["started_at"], row["finished_at"]),
        "total_tokens": int(row["total_tokens"] or 0),
        "total_steps": int(row["total_steps"] or 0),
        "created_by_role": row["created_by_role"],
        "created_by": row["created_by"],
        "created_at": iso_to_epoch_us(created_text) // 1_000_000,
        "finished_at": _epoch_seconds(row["finished_at"] or ""),
        "exceptions_count": int(row["exceptions_count"] or 0),
    }


def run_summary(row: Row) -> RunSummary:
    return RunSummary(**_summary_fields(dict(zip(SUMMARY_COLUMNS, row, strict=False))))


def _json_document(text: str | None) -> Any:
    """Parsed JSON; `{}` when empty, as Dify answers."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_detail(row: Row) -> RunDetail:
    values = dict(zip(DETAIL_COLUMNS, row, strict=True))
    return RunDetail(
        **_summary_fields(values),
        tenant_id=values["tenant_id"],
        app_id=values["app_id"],
        workflow_id=values["workflow_id"],
        type=values["type"],
        triggered_from=values["triggered_from"],
        graph=_json_document(values["graph"]),
        inputs=_json_document(values["inputs"]),
        outputs=_json_document(values["outputs"]),
        error=values["error_message"] or None,
    )
