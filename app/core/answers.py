"""Query rows (queries/rows.py) to the API's answers (schemas/), for every source alike."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from app.core.days import day_number_to_date, iso_to_epoch_us
from app.core.json_depth import NestedTooDeeply, decode_within_depth
from app.core.measures import DailyMeasure
from app.stores.people import People
from queries.rows import AppActivityRow, DailyRow, NodeExecutionRow, RunDetailRow, RunRow, StatusCountRow
from schemas.discovery import AppRuns, TenantRuns
from schemas.nodes import (
    ConsoleNodeExecution,
    ConsoleNodeExecutionsAnswer,
    ConsoleNodes,
    ConsoleRunDetail,
    ConsoleRunPageAnswer,
    ConsoleRunSummary,
    NodeExecution,
    NodeExecutionsAnswer,
)
from schemas.runs import RunCounts, RunDetail, RunPageAnswer, RunSummary


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
    value = _decoded(text)
    return text if value is _UNPARSABLE else value


def cut_fields(row: RunDetailRow, field_bytes: int | None) -> list[str]:
    """The run's fields that may have been cut by the store (see `cut_values`)."""
    values = {name: getattr(row, name) for name in ("graph", "inputs", "outputs", "error_message")}
    return cut_values(values, ("graph", "inputs", "outputs"), field_bytes)


def cut_values(
    values: dict[str, str | None], documents: tuple[str, ...], field_bytes: int | None
) -> list[str]:
    """The names of `values` the store may have cut: a JSON document (named in `documents`) that
    does not parse, or a value that reached the store's field length (see `_reached`)."""
    return [
        name
        for name, value in values.items()
        if _reached(value or "", field_bytes) or (name in documents and value and not _parses(value))
    ]


def _reached(text: str, field_bytes: int | None) -> bool:
    """With a store that cuts text values (`field_bytes`), whether this one reached the length:
    SLS cuts at a byte count, possibly just before a multi-byte character."""
    return field_bytes is not None and max(len(text), len(text.encode()) + 3) >= field_bytes


def _parses(text: str) -> bool:
    return _decoded(text) is not _UNPARSABLE


_UNPARSABLE = object()


def _decoded(text: str) -> Any:
    """The JSON value of `text`, or _UNPARSABLE, also where it nests too deeply to be answered
    (app/core/json_depth.py). msgspec first (fast); json, which Dify itself uses, when msgspec refuses
    (NaN and Infinity, which Python's json writes)."""
    try:
        return decode_within_depth(text, msgspec.json.decode)
    except NestedTooDeeply:
        return _UNPARSABLE
    except msgspec.DecodeError:
        pass
    try:
        return decode_within_depth(text, json.loads)
    except ValueError:  # NestedTooDeeply too
        return _UNPARSABLE


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


# Dify's node documents and what each answers when empty (its model's `*_dict` properties).
_NODE_DOCUMENTS: dict[str, Any] = {
    "inputs": None,
    "process_data": None,
    "outputs": None,
    "execution_metadata": {},
}


def node_execution(row: NodeExecutionRow, people: People, field_bytes: int | None) -> NodeExecution:
    """One node execution as Dify's console shows it; a value the store may have cut (it reached
    `field_bytes`, or a document that does not parse) is answered as its text and flagged."""
    documents: dict[str, Any] = {}
    cut: list[str] = []
    for name, empty in _NODE_DOCUMENTS.items():
        text = getattr(row, name) or ""
        value = _decoded(text) if text else empty
        if value is _UNPARSABLE or _reached(text, field_bytes):
            cut.append(name)
            value = text
        documents[name] = value
    error = row.error or None
    if error is not None and _reached(error, field_bytes):
        cut.append("error")
    created_us = row.created_key if row.created_key >= 0 else None
    return NodeExecution(
        id=row.id,
        index=int(row.index),
        predecessor_node_id=row.predecessor_node_id or None,
        node_id=row.node_id,
        node_type=row.node_type,
        title=row.title or "",
        **documents,
        status=row.status,
        error=error,
        elapsed_time=_node_elapsed(row.elapsed_time, created_us, row.finished_us),
        extras={},
        created_at=None if created_us is None else created_us // 1_000_000,
        created_by_role=row.created_by_role,
        created_by_account=people.account(row.created_by_role, row.created_by),
        created_by_end_user=people.end_user(row.created_by_role, row.created_by),
        finished_at=None if row.finished_us is None else row.finished_us // 1_000_000,
        inputs_truncated="inputs" in cut,
        outputs_truncated="outputs" in cut,
        process_data_truncated="process_data" in cut,
        created_by=row.created_by,
        truncated_fields=cut,
    )


def _node_elapsed(elapsed_time: float | None, created_us: int | None, finished_us: int | None) -> float:
    """elapsed_time as written; when NULL, finished - created, or 0 while unfinished (as Dify's
    own LogStore reader)."""
    if elapsed_time is not None:
        return float(elapsed_time)
    if finished_us is None or created_us is None:
        return 0.0
    return (finished_us - created_us) / 1_000_000


def console_node_executions(answer: NodeExecutionsAnswer) -> ConsoleNodes:
    """The native answer in Dify's console shape (its fields only, in its order)."""
    fields = ConsoleNodeExecution.__struct_fields__
    data = [ConsoleNodeExecution(**{name: getattr(item, name) for name in fields}) for item in answer.data]
    return ConsoleNodes(ConsoleNodeExecutionsAnswer(data=data), answer.has_more)


def console_run_page(page: RunPageAnswer, people: People) -> ConsoleRunPageAnswer:
    """The run list as Dify's console answers it: who ran each run, when an account did."""
    return ConsoleRunPageAnswer(
        limit=page.limit,
        has_more=page.has_more,
        data=[
            ConsoleRunSummary(
                **msgspec.structs.asdict(run),
                created_by_account=people.account(run.created_by_role, run.created_by),
            )
            for run in page.data
        ],
    )


def console_run_detail(detail: RunDetail, people: People) -> ConsoleRunDetail:
    return ConsoleRunDetail(
        **msgspec.structs.asdict(detail),
        created_by_account=people.account(detail.created_by_role, detail.created_by),
        created_by_end_user=people.end_user(detail.created_by_role, detail.created_by),
    )
