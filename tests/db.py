"""Test database helpers: load a history with COPY, run a built query in either dialect."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar

import psycopg
from psycopg.rows import class_row

from app.demo import COLUMNS, WORKFLOW_RUNS_COLUMNS, copy_rows, copy_workflow_runs
from app.demo_messages import MESSAGE_COLUMNS
from app.demo_nodes import NODE_LOGSTORE_COLUMNS
from queries import runs
from queries.literals import with_literals
from queries.rows import RunPageRow
from queries.runs import RunCursor
from queries.scope import Query, RunScope
from tests.reference import EPOCH, NodeVersion, Version, created_us, iso_to_us

Row = TypeVar("Row")


def version_tuple(row: Version | NodeVersion, columns: tuple[str, ...] = COLUMNS) -> tuple[Any, ...]:
    """A LogStore row (runs', or with NODE_LOGSTORE_COLUMNS nodes') in COPY column order."""
    values = {field: getattr(row, field) for field in type(row).__struct_fields__}
    values["__time__"] = values.pop("time")
    return tuple(values[column] for column in columns)


def load_history(conn: psycopg.Connection[Any], rows: Iterable[Version]) -> None:
    """Replace the table's content with `rows`, in the given (arbitrary) physical order."""
    conn.execute("TRUNCATE workflow_execution")
    copy_rows(conn, (version_tuple(row) for row in rows))


def fetch(conn: psycopg.Connection[Any], query: Query) -> Sequence[tuple[Any, ...]]:
    """Run as the service sends a statement to SLS: its values written in, one simple query."""
    with psycopg.ClientCursor(conn) as cursor:
        cursor.execute(with_literals(query))
        return cursor.fetchall()


def fetch_rows(conn: psycopg.Connection[Any], query: Query, row_type: type[Row]) -> list[Row]:
    """Like `fetch`, with rows built by column name as the service's backend builds them."""
    with psycopg.ClientCursor(conn, row_factory=class_row(row_type)) as cursor:
        cursor.execute(with_literals(query))
        return cursor.fetchall()


def fetch_run_page(
    conn: psycopg.Connection[Any], scope: RunScope, limit: int, status: str | None, after: RunCursor | None
) -> list[RunPageRow]:
    """One page of the run list as the repository reads it: one statement, or the shortcut's two
    (the page's keys, then those runs' latest versions)."""
    page = runs.run_page(scope, limit, status, after)
    if scope.plan != "shortcut":
        return fetch_rows(conn, page, RunPageRow)
    keys = fetch_rows(conn, page, RunCursor)
    return fetch_rows(conn, runs.run_page_rows(scope, keys), RunPageRow) if keys else []


def _naive_utc(us: int) -> datetime:
    return (EPOCH + timedelta(microseconds=us)).replace(tzinfo=None)


def workflow_runs_tuple(run: Version) -> tuple[Any, ...]:
    """Dify's workflow_runs row holding `run` (a version) as the run's state; written here from
    the reference's own parsing, independently of app/demo.py."""
    finished_us = iso_to_us(run.finished_at) if run.finished_at else None
    elapsed = run.elapsed_time
    if elapsed is None:
        elapsed = (finished_us - iso_to_us(run.started_at)) / 1e6 if finished_us is not None else 0.0
    values = {
        **{field: getattr(run, field) for field in Version.__struct_fields__},
        "error": run.error_message or None,
        "elapsed_time": elapsed,
        "created_at": _naive_utc(created_us(run)),
        "finished_at": _naive_utc(finished_us) if finished_us is not None else None,
    }
    return tuple(values[column] for column in WORKFLOW_RUNS_COLUMNS)


def load_two_sources(
    conn: psycopg.Connection[Any], logstore: Iterable[Version], workflow_runs: Iterable[Version]
) -> None:
    """Replace both tables: LogStore versions, and workflow_runs rows (one state per run)."""
    conn.execute("TRUNCATE workflow_execution, workflow_runs")
    copy_rows(conn, (version_tuple(row) for row in logstore))
    copy_workflow_runs(conn, (workflow_runs_tuple(run) for run in workflow_runs))


class Message(NamedTuple):
    """A row of Dify's `messages`: what the advanced-chat run list reads of it."""

    id: str
    app_id: str
    conversation_id: str
    workflow_run_id: str | None
    created_at: datetime  # naive UTC, as Dify stores it


def load_messages(conn: psycopg.Connection[Any], messages: Iterable[Message]) -> None:
    """Replace Dify's `messages` with `messages` (the columns Dify requires filled as Dify does)."""
    conn.execute("TRUNCATE messages")
    values = {"inputs": "{}", "query": "hi", "message": "[]", "message_unit_price": 0, "answer": "hello",
              "answer_unit_price": 0, "currency": "USD", "from_source": "api", "from_end_user_id": None,
              "from_account_id": None, "invoke_from": "web-app"}  # fmt: skip
    rows = (
        tuple(
            {**values, **message._asdict(), "updated_at": message.created_at}[column]
            for column in MESSAGE_COLUMNS
        )
        for message in messages
    )
    copy_rows(conn, rows, "messages", MESSAGE_COLUMNS)


def load_node_history(conn: psycopg.Connection[Any], rows: Iterable[NodeVersion]) -> None:
    """Replace the node LogStore's content with `rows`, in the given (arbitrary) physical order."""
    conn.execute("TRUNCATE workflow_node_execution")
    nodes = (version_tuple(row, NODE_LOGSTORE_COLUMNS) for row in rows)
    copy_rows(conn, nodes, "workflow_node_execution", NODE_LOGSTORE_COLUMNS)


@contextmanager
def locked_table(database_url: str) -> Iterator[Callable[[], int]]:
    """The LogStore's table locked: every statement waits where it can be counted; yields a
    count of the statements waiting for the lock."""
    with (
        psycopg.connect(database_url, autocommit=True) as locker,
        psycopg.connect(database_url, autocommit=True) as watcher,
    ):
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE workflow_execution IN ACCESS EXCLUSIVE MODE")

        def waiting() -> int:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%workflow_execution%' AND pid <> pg_backend_pid()"
            ).fetchone()
            return int(row[0]) if row else 0

        try:
            yield waiting
        finally:
            locker.execute("ROLLBACK")
