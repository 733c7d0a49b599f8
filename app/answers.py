"""Query rows (queries/rows.py) to the API's answers (schemas/), for every source alike."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from app.days import day_number_to_date, iso_to_epoch_us
from app.measures import DailyMeasure
from queries.rows import AppActivityRow, DailyRow, RunDetailRow, RunRow, StatusCountRow
from schemas.discovery import AppRuns, TenantRuns
from schemas.runs import RunCounts, RunDetail, RunSummary


def daily_points(measure: DailyMeasure, rows: Iterable[DailyRow]) -> list[Any]:
    return [
        measure.point(day_number_to_date(row.day).isoformat(), row) for row in rows if row.day is not None
    ]


def run_counts(rows: Iterable[StatusCountRow]) -> RunCounts:
    by_status: dict[str, int] = {}
    for row in rows:  # a status may come once per source
        by_status[str(row.status)] = by_status.get(str(row.status), 0) + int(row.runs)
    return RunCounts(
        total=sum(by_status.values()),
        running=by_status.get("running", 0),
        succeeded=by_status.get("succeeded", 0),
        failed=by_status.get("failed", 0),
        stopped=by_status.get("stopped", 0),
        partial_succeeded=by_status.get("partial-succeeded", 0),
    )


def busiest_apps(rows: Iterable[AppActivityRow]) -> list[AppRuns]:
    """One tenant's apps, busiest first, then by app id (a unique, stable order)."""
    ranked = sorted(rows, key=lambda row: (-int(row.runs), str(row.app_id)))
    return [
        AppRuns(app_id=row.app_id, runs=int(row.runs), last_run_at=_floor_s(row.last_created_us))
        for row in ranked
    ]


def busiest_tenants(rows: Iterable[AppActivityRow]) -> list[TenantRuns]:
    """Apps grouped by tenant (each app once: the repository already merged the sources),
    busiest first, then by tenant id."""
    tenants: dict[str, TenantRuns] = {}
    for row in rows:
        seen = tenants.get(row.tenant_id, TenantRuns(tenant_id=row.tenant_id, apps=0, runs=0, last_run_at=0))
        tenants[row.tenant_id] = TenantRuns(
            tenant_id=row.tenant_id,
            apps=seen.apps + 1,
            runs=seen.runs + int(row.runs),
            last_run_at=max(seen.last_run_at, _floor_s(row.last_created_us)),
        )
    return sorted(tenants.values(), key=lambda tenant: (-tenant.runs, tenant.tenant_id))


def _floor_s(us: int) -> int:
    return int(us) // 1_000_000


def _epoch_seconds(text: str | None) -> int | None:
    return iso_to_epoch_us(text) // 1_000_000 if text else None


def _elapsed(elapsed_time: float | None, started_at: str | None, finished_at: str | None) -> float:
    """elapsed_time as written; when NULL, finished - started, or 0 while unfinished."""
    if elapsed_time is not None:
        return float(elapsed_time)
    if not finished_at or not started_at:
        return 0.0
    return (iso_to_epoch_us(finished_at) - iso_to_epoch_us(started_at)) / 1_000_000


def _summary_fields(row: RunRow) -> dict[str, Any]:
    created_text = row.created_at or row.started_at or ""
    return {
        "id": row.id,
        "version": row.version,
        "status": row.status,
        "elapsed_time": _elapsed(row.elapsed_time, row.started_at, row.finished_at),
        "total_tokens": int(row.total_tokens or 0),
        "total_steps": int(row.total_steps or 0),
        "created_by_role": row.created_by_role,
        "created_by": row.created_by,
        "created_at": iso_to_epoch_us(created_text) // 1_000_000,
        "finished_at": _epoch_seconds(row.finished_at),
        "exceptions_count": int(row.exceptions_count or 0),
    }


def run_summaries(rows: Sequence[RunRow]) -> list[RunSummary]:
    return [RunSummary(**_summary_fields(row)) for row in rows]


def _json_document(text: str | None) -> Any:
    """Parsed JSON; `{}` when empty, as Dify answers; the text itself when it does not parse."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return text


def cut_fields(row: RunDetailRow, field_bytes: int | None) -> list[str]:
    """The document fields that may have been cut by the store: a JSON document that does not
    parse, or (with a store that cuts, `field_bytes`) a value that reached its length; SLS cuts
    at a byte count, possibly just before a multi-byte character."""
    cut = []
    for name in ("graph", "inputs", "outputs", "error_message"):
        text = getattr(row, name) or ""
        reached = field_bytes is not None and max(len(text), len(text.encode()) + 3) >= field_bytes
        if reached or (name != "error_message" and text and not _parses(text)):
            cut.append(name)
    return cut


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def run_detail(row: RunDetailRow, field_bytes: int | None = None) -> RunDetail:
    return RunDetail(
        **_summary_fields(row),
        tenant_id=row.tenant_id,
        app_id=row.app_id,
        workflow_id=row.workflow_id,
        type=row.type,
        triggered_from=row.triggered_from,
        graph=_json_document(row.graph),
        inputs=_json_document(row.inputs),
        outputs=_json_document(row.outputs),
        error=row.error_message or None,
        truncated_fields=cut_fields(row, field_bytes),
    )
