"""The truth, in plain Python: the latest version of every run, then Dify's PostgreSQL semantics.

Deliberately independent of queries/: zone handling uses zoneinfo on datetimes, created times are
parsed with datetime.fromisoformat, and nothing here knows about the writer invariants.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Version(msgspec.Struct, frozen=True, kw_only=True):
    """One row of workflow_execution."""

    time: int  # __time__
    id: str
    log_version: int
    tenant_id: str
    app_id: str
    workflow_id: str
    triggered_from: str
    type: str
    version: str
    status: str
    total_tokens: int
    total_steps: int
    exceptions_count: int
    elapsed_time: float | None
    created_by_role: str
    created_by: str
    created_at: str
    started_at: str
    finished_at: str
    graph: str = ""
    inputs: str = ""
    outputs: str = ""
    error_message: str = ""


def iso_to_us(text: str) -> int:
    """ISO-8601 text to µs since the epoch; naive text is UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


def created_us(version: Version) -> int:
    return iso_to_us(version.created_at or version.started_at)


def local_date(us: int, zone: str) -> date:
    return (EPOCH + timedelta(microseconds=us)).astimezone(ZoneInfo(zone)).date()


def duration_us(version: Version) -> int | None:
    """A finished version's duration in µs: its elapsed_time read to the microsecond (rounded half
    up, in double arithmetic), or finished_at - started_at when elapsed_time is None; None while
    unfinished, or for an elapsed_time beyond ±1e12 s (or NaN)."""
    if not version.finished_at:
        return None
    elapsed = version.elapsed_time
    if elapsed is None:
        return iso_to_us(version.finished_at) - iso_to_us(version.started_at)
    if not -1e12 <= elapsed <= 1e12:
        return None
    return math.floor(elapsed * 1_000_000 + 0.5)


def _order(row: Version) -> tuple[int, int, int, str, float]:
    duration = duration_us(row)
    return (
        row.log_version,
        row.time,
        row.total_tokens,
        row.status,
        -math.inf if duration is None else duration,
    )


def latest_versions(rows: Iterable[Version]) -> list[Version]:
    best: dict[str, Version] = {}
    for row in rows:
        current = best.get(row.id)
        # The truth's order: log_version, then __time__; then tokens, status and duration, so that
        # versions tying on both are still ordered, whatever order they arrive in.
        if current is None or _order(row) > _order(current):
            best[row.id] = row
    return list(best.values())


def runs_in_scope(
    rows: Iterable[Version],
    tenant_id: str,
    app_id: str,
    triggered_from: str,
    start_us: int | None = None,
    end_us: int | None = None,
) -> list[Version]:
    return [
        run
        for run in latest_versions(rows)
        if run.tenant_id == tenant_id
        and run.app_id == app_id
        and run.triggered_from == triggered_from
        and (start_us is None or created_us(run) >= start_us)
        and (end_us is None or created_us(run) < end_us)
    ]


def with_status(runs: list[Version], status: str | None) -> list[Version]:
    """The runs whose latest status is `status` (None: every run)."""
    return [run for run in runs if status is None or run.status == status]


Point = dict[str, Any]  # a day's values by the answer's field names


def _by_day(runs: list[Version], zone: str) -> dict[date, list[Version]]:
    days: dict[date, list[Version]] = defaultdict(list)
    for run in runs:
        days[local_date(created_us(run), zone)].append(run)
    return days


def daily_runs(runs: list[Version], zone: str) -> list[tuple[date, Point]]:
    return sorted((day, {"runs": len(own)}) for day, own in _by_day(runs, zone).items())


def daily_terminals(runs: list[Version], zone: str) -> list[tuple[date, Point]]:
    days = _by_day(runs, zone).items()
    return sorted((day, {"terminal_count": len({run.created_by for run in own})}) for day, own in days)


def daily_token_costs(runs: list[Version], zone: str) -> list[tuple[date, Point]]:
    days = _by_day(runs, zone).items()
    return sorted((day, {"token_count": sum(run.total_tokens for run in own)}) for day, own in days)


def daily_interactions(runs: list[Version], zone: str) -> list[tuple[date, Point]]:
    """Dify: the average over users of each user's run count that day, rounded half-even."""
    answer = []
    for day, own in sorted(_by_day(runs, zone).items()):
        counts = Counter(run.created_by for run in own)
        mean = Decimal(sum(counts.values())) / Decimal(len(counts))
        answer.append(
            (day, {"interactions": float(mean.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))})
        )
    return answer


FINISHED = ("succeeded", "failed", "stopped", "partial-succeeded")


def daily_status(runs: list[Version], zone: str) -> list[tuple[date, Point]]:
    """Runs by the status of their latest version, every status in every day, and failed ÷ finished
    rounded to 4 decimals half-even (Python's round of an exact fraction), None without finished."""
    answer = []
    for day, own in sorted(_by_day(runs, zone).items()):
        counts = Counter(run.status for run in own)
        point: Point = {
            name.replace("-", "_"): counts[name]
            for name in ("succeeded", "failed", "stopped", "partial-succeeded", "running", "paused")
        }
        finished = sum(counts[name] for name in FINISHED)
        point["failure_rate"] = float(round(Fraction(counts["failed"], finished), 4)) if finished else None
        answer.append((day, point))
    return answer


def nearest_rank(ordered: list[int], fraction: Fraction) -> int:
    """The value at (1-based) position ceil(fraction * n) of the ascending values."""
    return ordered[math.ceil(fraction * len(ordered)) - 1]


def daily_duration(runs: list[Version], zone: str) -> list[tuple[date, Point]]:
    """Over the runs whose latest version is finished (and whose duration is known): their count,
    nearest-rank p50/p95/p99 and maximum, in seconds; None for a day without such runs."""
    answer = []
    for day, own in sorted(_by_day(runs, zone).items()):
        ordered = sorted(us for us in (duration_us(run) for run in own) if us is not None)
        point: Point = {"count": len(ordered)}
        for name, fraction in (
            ("p50", Fraction(1, 2)),
            ("p95", Fraction(95, 100)),
            ("p99", Fraction(99, 100)),
        ):
            point[name] = nearest_rank(ordered, fraction) / 1_000_000 if ordered else None
        point["max"] = max(ordered) / 1_000_000 if ordered else None
        answer.append((day, point))
    return answer


def status_counts(runs: list[Version], status: str | None = None) -> dict[str, int]:
    counter = Counter(run.status for run in runs if status is None or run.status == status)
    return dict(counter)


def run_list(runs: list[Version], status: str | None = None) -> list[Version]:
    """Every run in list order: created time descending, then id descending."""
    chosen = [run for run in runs if status is None or run.status == status]
    return sorted(chosen, key=lambda run: (created_us(run), run.id), reverse=True)


# The truth of each daily measure, by the name app/core/measures.py declares it under.
DAILY: dict[str, Callable[[list[Version], str], list[tuple[date, Point]]]] = {
    "daily_runs": daily_runs,
    "daily_terminals": daily_terminals,
    "daily_token_costs": daily_token_costs,
    "daily_interactions": daily_interactions,
    "daily_status": daily_status,
    "daily_duration": daily_duration,
}


# --- node executions -------------------------------------------------------------------------


class NodeVersion(msgspec.Struct, frozen=True, kw_only=True):
    """One row of workflow_node_execution."""

    time: int  # __time__
    id: str
    log_version: int
    tenant_id: str
    app_id: str
    workflow_id: str
    triggered_from: str
    workflow_run_id: str
    index: int
    node_id: str
    node_type: str
    status: str
    created_at: str
    created_by_role: str
    created_by: str
    elapsed_time: float | None = None
    predecessor_node_id: str = ""
    node_execution_id: str = ""
    title: str = ""
    inputs: str = ""
    process_data: str = ""
    outputs: str = ""
    error: str = ""
    execution_metadata: str = ""
    finished_at: str = ""


def _absent_first(value: object) -> tuple[bool, object]:
    """NULL sorts below every value (the SQL orders each column DESC NULLS LAST)."""
    return (value is not None, value if value is not None else 0)


def node_order(row: NodeVersion) -> tuple[object, ...]:
    """The truth's order of a node execution's versions: log_version, then __time__, then every
    other column, so versions that tie on both are still ordered whatever order they arrive in."""
    rest = (
        row.status, row.finished_at, row.elapsed_time, row.outputs, row.process_data, row.inputs,
        row.execution_metadata, row.error, row.title, row.predecessor_node_id, row.node_execution_id,
        row.node_id, row.node_type, row.index, row.created_at, row.created_by_role, row.created_by,
        row.triggered_from, row.workflow_id,
    )  # fmt: skip
    return (row.log_version, row.time, *(_absent_first(value) for value in rest))


def node_created_key(row: NodeVersion) -> int:
    """Created time in µs; -1 for a text that is not an ISO-8601 date-time (sorted first)."""
    try:
        return iso_to_us(row.created_at)
    except ValueError:
        return -1


def node_executions(
    rows: Iterable[NodeVersion], tenant_id: str, app_id: str, run_id: str
) -> list[NodeVersion]:
    """The run's node executions as Dify's console lists them: the latest version of each id
    among the run's rows, without workflow-tool ones, by created time, index, id."""
    best: dict[str, NodeVersion] = {}
    for row in rows:
        if (row.tenant_id, row.app_id, row.workflow_run_id) != (tenant_id, app_id, run_id):
            continue
        current = best.get(row.id)
        if current is None or node_order(row) > node_order(current):
            best[row.id] = row
    shown = [row for row in best.values() if row.triggered_from != "workflow-tool"]
    return sorted(shown, key=lambda row: (node_created_key(row), row.index, row.id))
