"""The statements that check a store rather than answer a question: is a connection alive, are
the table and its columns there, do the fields the service reads hold values.

SLS documents no SELECT without FROM and no empty statement, so on the sls dialect every check
reads the logstore itself, bounded to a short, recent stretch of `__time__` with a LIMIT (cheap:
SLS scans by time). A plain PostgreSQL documents `SELECT 1`, and its LogStore-shaped table has no
index that leads with `__time__`, so it keeps the constant statement (and `__time__ > 0`, which
stops at the first row) there.
"""

from __future__ import annotations

from queries.dialects import Dialect
from queries.scope import LOGSTORE_TABLE, Query

# Seconds of writes a connection check reads on SLS: a few, so it reads next to nothing.
CHECK_WINDOW_S = 5


def connection_check(dialect: Dialect, now_s: int) -> Query:
    """One statement that proves a connection answers (the pool's check, the breaker's probe)."""
    if dialect == "postgres":
        return Query("SELECT 1 AS ok LIMIT 1", {})
    sql = f"SELECT __time__ AS ok FROM {LOGSTORE_TABLE} WHERE __time__ >= %(since)s LIMIT 1"
    return Query(sql, {"since": int(now_s) - CHECK_WINDOW_S})


def schema_probe(table: str, columns: tuple[str, ...], dialect: Dialect | None, now_s: int) -> Query:
    """At most one row of every column the service reads: a missing table or column fails it.
    `dialect` None: Dify's own table (no `__time__`); else the LogStore in that dialect, whose
    statements all carry a `__time__` condition (on SLS a recent hour: a missing column fails the
    statement whether or not rows match)."""
    where = ""
    params: dict[str, object] = {}
    if dialect == "postgres":
        where = " WHERE __time__ > 0"
    elif dialect == "sls":
        where = " WHERE __time__ >= %(since)s"
        params["since"] = int(now_s) - 3600
    return Query(f"SELECT {', '.join(columns)} FROM {table}{where} LIMIT 1", params)


def field_counts(fields: tuple[str, ...], since_s: int) -> Query:
    """Per field, how many versions written since the instant hold a value, and how many versions
    there are (`versions`); `finished` counts those of a finished status, which must have a
    `finished_at`. SLS answers NULL for a field whose index has analytics turned off, silently:
    a field with no value where versions exist is misconfigured, and would read as zeros."""
    counted = ", ".join(
        f"count(nullif(CAST({field} AS varchar), '')) AS {field}" for field in dict.fromkeys(fields)
    )
    finished = "count(CASE WHEN status IN ('succeeded', 'failed', 'stopped', 'partial-succeeded') THEN 1 END)"
    sql = (
        f"SELECT count(*) AS versions, {finished} AS finished, {counted} "
        f"FROM {LOGSTORE_TABLE} WHERE __time__ >= %(since)s LIMIT 1"
    )
    return Query(sql, {"since": int(since_s)})
