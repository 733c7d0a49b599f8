"""How statements reach SLS: values written in by one quoting function, every backend error
classified, quota errors retried before a 503 — checked on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import psycopg
import pytest

from app.config import load_settings
from app.stores.backend import Backend, BackendFailed, BackendUnavailable, error_kind
from queries.literals import sql_literal, with_literals
from queries.scope import Query

NASTY = ["it's", "back\\slash", "\\'; DROP TABLE workflow_execution; --", "''", "\\", "日本語 'x'", "%(x)s"]


class Echo(msgspec.Struct):
    value: str | None


def test_each_value_comes_back_unchanged(pg_conn: psycopg.Connection[Any]) -> None:
    """Quotes doubled, backslashes left alone: what SLS documents, and PostgreSQL reads the same
    with standard_conforming_strings (no E'' literals anywhere)."""
    assert pg_conn.execute("SHOW standard_conforming_strings").fetchone() == ("on",)
    for value in NASTY:
        text = with_literals(Query("SELECT %(value)s AS value", {"value": value}))
        assert "E'" not in text
        assert pg_conn.execute(text).fetchone() == (value,), value  # type: ignore[arg-type]
    assert with_literals(Query("SELECT %(n)s, %(none)s", {"n": -12, "none": None})) == "SELECT -12, NULL"


def test_each_value_comes_back_unchanged_through_the_sls_standin(sls_standin: Any) -> None:
    """The same through the stand-in of SLS's endpoint (simple protocol only, no binding)."""
    with psycopg.connect(sls_standin.url, autocommit=True, prepare_threshold=None) as conn:
        for value in NASTY:
            sql = "SELECT %(value)s AS value FROM generate_series(1, 1) AS one LIMIT 1"
            text = with_literals(Query(sql, {"value": value}))
            with psycopg.ClientCursor(conn) as cursor:
                cursor.execute(text)  # type: ignore[arg-type]
                assert cursor.fetchall() == [(value,)], value


def test_values_it_cannot_write_are_refused() -> None:
    for value in (True, 1.5, b"x", "nul\x00"):
        with pytest.raises((TypeError, ValueError)):
            sql_literal(value)


def test_backend_errors_are_classified(pg_conn: psycopg.Connection[Any]) -> None:
    def failure(sql: str) -> Exception:
        with pytest.raises(psycopg.Error) as caught:
            pg_conn.execute(sql)  # type: ignore[arg-type]
        return caught.value

    assert error_kind(failure("SELEC 1")) == "bad_sql"
    assert error_kind(failure("SELECT no_such_column FROM workflow_execution")) == "bad_sql"
    assert error_kind(failure("SELECT CAST('not a time' AS timestamptz)")) == "bad_data"
    assert error_kind(failure("SELECT pg_sleep(1) FROM (SELECT 1) AS t WHERE 1/0 = 1")) == "bad_data"
    assert error_kind(psycopg.OperationalError("server closed the connection")) == "unavailable"
    assert error_kind(psycopg.errors.TooManyConnections("too many connections")) == "quota"
    assert error_kind(psycopg.Error("Query exceeded the concurrent analysis quota")) == "quota"


def test_a_bad_statement_is_a_classified_failure_not_an_outage(database_url: str) -> None:
    settings = load_settings({"STATS_DATABASE_URL": database_url, "STATS_QUERY_TIMEOUT": "0.5"})

    async def run() -> None:
        backend = Backend(database_url, settings)
        await backend.open()
        try:
            with pytest.raises(BackendFailed, match="bad_sql"):
                await backend.fetch(Query("SELECT nope FROM workflow_execution LIMIT 1", {}), Echo)
            assert not backend.breaker.is_open  # a defect does not open the circuit
            with pytest.raises(BackendUnavailable):
                await backend.fetch(Query("SELECT pg_sleep(3) AS value", {}), Echo)
        finally:
            await backend.close()

    asyncio.run(run())
