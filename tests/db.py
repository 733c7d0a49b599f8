"""Test database helpers: load a history with COPY, run a built query in either dialect."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from app.demo import COLUMNS, copy_rows
from queries.scope import Query
from tests.reference import Version


def version_tuple(row: Version) -> tuple[Any, ...]:
    values = {field: getattr(row, field) for field in Version.__struct_fields__}
    values["__time__"] = values.pop("time")
    return tuple(values[column] for column in COLUMNS)


def load_history(conn: psycopg.Connection[Any], rows: Iterable[Version]) -> None:
    """Replace the table's content with `rows`, in the given (arbitrary) physical order."""
    conn.execute("TRUNCATE workflow_execution")
    copy_rows(conn, (version_tuple(row) for row in rows))


def fetch(conn: psycopg.Connection[Any], query: Query) -> Sequence[tuple[Any, ...]]:
    """Run with client-side binding, as the service does against SLS."""
    with psycopg.ClientCursor(conn) as cursor:
        cursor.execute(query.sql, query.params)
        return cursor.fetchall()
