"""The rows each statement answers, by column name (the backend builds them with psycopg's
`class_row`). Values arrive as the engine sends them (a PostgreSQL `sum` is a Decimal, SLS may
send NULL for an empty text); app/core/answers.py turns them into the API's answers."""

from __future__ import annotations

from typing import Any

import msgspec


class DailyRow(msgspec.Struct, frozen=True, kw_only=True):
    """One local day of a daily measure; a measure fills the aggregates it declares. The row whose
    `day` is None counts the runs whose created time did not parse (queries/daily.py).

    Runs by the status of their latest version are named after it (`partial-succeeded` as
    `partial_succeeded`); durations are integer µs: `durations` counts the finished runs with a
    known duration, `p50_us`, `p95_us`, `p99_us` are nearest ranks, `max_us` the largest."""

    day: int | None
    runs: Any = 0
    users: Any = 0
    tokens: Any = 0
    succeeded: Any = 0
    failed: Any = 0
    stopped: Any = 0
    partial_succeeded: Any = 0
    running: Any = 0
    paused: Any = 0
    durations: Any = 0
    p50_us: Any = None
    p95_us: Any = None
    p99_us: Any = None
    max_us: Any = None
    unparsed_runs: Any = 0
    unparsed_example: str | None = None


class DayUserRow(msgspec.Struct, frozen=True):
    day: int
    created_by: str


class DayValueRow(msgspec.Struct, frozen=True):
    """One value of a ranked column on one day, and how many runs have it (queries/daily.day_values)."""

    day: int
    value: int
    runs: int


class StatusCountRow(msgspec.Struct, frozen=True):
    status: str
    runs: int


class CursorRow(msgspec.Struct, frozen=True):
    created_us: int


class AppRow(msgspec.Struct, frozen=True):
    tenant_id: str
    app_id: str
    runs: int


class AppActivityRow(msgspec.Struct, frozen=True):
    tenant_id: str
    app_id: str
    runs: int
    last_created_us: int


class RunRow(msgspec.Struct, frozen=True, kw_only=True):
    """A run's summary columns, in the LogStore's text forms (ISO-8601 times, '' when empty)."""

    id: str
    version: str
    status: str
    elapsed_time: float | None
    total_tokens: int | None
    total_steps: int | None
    created_by_role: str
    created_by: str
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    exceptions_count: int | None


class RunPageRow(RunRow, frozen=True, kw_only=True):
    created_us: int


class RunDetailRow(RunRow, frozen=True, kw_only=True):
    tenant_id: str
    app_id: str
    workflow_id: str
    type: str
    triggered_from: str
    graph: str | None
    inputs: str | None
    outputs: str | None
    error_message: str | None


SUMMARY_COLUMNS: tuple[str, ...] = RunRow.__struct_fields__
DETAIL_COLUMNS: tuple[str, ...] = RunDetailRow.__struct_fields__


class RunStateRow(msgspec.Struct, frozen=True):
    """One run as queries/run_rows.py reads it: what the kept state of live days needs."""

    id: str
    day: int
    created_us: int
    created_by: str
    latest_key: str


class RunSpanRow(msgspec.Struct, frozen=True):
    """queries/node_executions.run_span: a run's existence, created time and write times."""

    versions: int
    created_us: int | None
    last_written_s: int | None
    finished: int | None


class NodeExecutionRow(msgspec.Struct, frozen=True, kw_only=True):
    """One node execution at its latest version, in the LogStore's text forms ('' when empty)."""

    id: str
    index: int
    predecessor_node_id: str | None
    node_id: str
    node_type: str
    title: str | None
    inputs: str | None
    process_data: str | None
    outputs: str | None
    status: str
    error: str | None
    elapsed_time: float | None
    execution_metadata: str | None
    created_at: str | None
    created_by_role: str
    created_by: str
    finished_at: str | None
    created_key: int  # created time in µs since the epoch, -1 when it does not parse
    finished_us: int | None  # finished time in µs since the epoch; None while unfinished


class MessageRow(msgspec.Struct, frozen=True):
    """The message of a chatflow run, and its conversation (queries/messages.py)."""

    workflow_run_id: str
    message_id: str
    conversation_id: str


class PersonRow(msgspec.Struct, frozen=True, kw_only=True):
    """An account or an end user of Dify's database (queries/people.py)."""

    role: str  # account or end_user
    id: str
    name: str | None = None
    email: str | None = None
    type: str | None = None
    is_anonymous: bool | None = None
    session_id: str | None = None
