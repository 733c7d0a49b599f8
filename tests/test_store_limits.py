"""What the answers say about the store's own limits: documents the store may have cut, and days
older than the LogStore's retention (real PostgreSQL, the real application)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from litestar.testing import TestClient

from app.config import load_settings
from app.core.answers import cut_fields
from app.main import create_app
from app.stores.backend import Backend
from queries.rows import RunDetailRow
from tests import examples
from tests.db import load_history

BASE = f"/v1/tenants/{examples.T}/apps/{examples.A}"


def _client(database_url: str, **env: str) -> TestClient[Any]:
    settings = load_settings({"STATS_DATABASE_URL": database_url, **env})
    return TestClient(app=create_app(settings, Backend(database_url, settings)))


@pytest.fixture
def history(pg_conn: psycopg.Connection[Any]) -> Iterator[list[Any]]:
    rows = examples.history()
    cut = '{"answer": "' + "x" * 3000  # a document cut mid-way, as SLS cuts long values
    rows = [msgspec.structs.replace(row, outputs=cut) if row.id == examples.R1 else row for row in rows]
    load_history(pg_conn, rows)
    yield rows


def test_a_document_that_does_not_parse_is_flagged_and_answered_as_text(
    database_url: str, history: list[Any]
) -> None:
    with _client(database_url) as client:
        detail = client.get(f"{BASE}/runs/{examples.R1}").json()
        whole = client.get(f"{BASE}/runs/{examples.R2}").json()
    assert detail["truncated_fields"] == ["outputs"]
    assert isinstance(detail["outputs"], str) and detail["outputs"].startswith('{"answer": "xxx')
    assert whole["truncated_fields"] == []


def test_values_that_reach_the_field_length_may_be_cut() -> None:
    fields = {name: "" for name in RunDetailRow.__struct_fields__}
    row = RunDetailRow(**{**fields, "graph": '{"a": 1}', "error_message": "e" * 2048})
    assert cut_fields(row, 2048) == ["error_message"]
    assert cut_fields(row, None) == []  # PostgreSQL does not cut
    multibyte = RunDetailRow(**{**fields, "inputs": '"' + "字" * 681 + '"'})  # 2045 bytes, whole JSON
    assert cut_fields(multibyte, 2048) == ["inputs"]  # SLS may have cut before a 3-byte character
    assert cut_fields(multibyte, 4096) == []


def test_days_before_the_logstore_retention_are_announced(database_url: str, history: list[Any]) -> None:
    now = datetime.now(UTC)
    recent = (now - timedelta(days=10)).date().isoformat()
    older = (now - timedelta(days=60)).date().isoformat()
    with _client(database_url, ALIYUN_SLS_LOGSTORE_TTL="30") as client:
        old = client.get(f"{BASE}/statistics/daily-runs", params={"start": older, "end": recent})
        fresh = client.get(f"{BASE}/statistics/daily-runs", params={"start": recent})
        counts = client.get(f"{BASE}/runs/count", params={"time_range": "60d"})
        counts_recent = client.get(f"{BASE}/runs/count", params={"time_range": "7d"})
    horizon = datetime.fromisoformat(old.headers["x-data-available-from"])
    assert abs(horizon - (now - timedelta(days=30))) < timedelta(minutes=5)
    assert "x-data-available-from" not in fresh.headers
    assert "x-data-available-from" in counts.headers
    assert "x-data-available-from" not in counts_recent.headers
    with _client(database_url) as client:  # no retention configured: nothing to announce
        assert "x-data-available-from" not in client.get(f"{BASE}/statistics/daily-runs").headers


def test_paging_stops_at_the_row_of_unparsable_runs(
    database_url: str, pg_conn: psycopg.Connection[Any]
) -> None:
    """That row's day is NULL and sorts last: a full page ending with it is the last page (paging
    on from a NULL key would start over at the first page, until the statement cap)."""
    import asyncio
    from functools import partial

    from app.core.measures import DAILY_RUNS
    from app.stores.repository import read_pages
    from queries import daily
    from queries.rows import DailyRow
    from queries.scope import RunScope

    rows = [
        msgspec.structs.replace(row, created_at="not a time", started_at="") if row.id == examples.R3 else row
        for row in examples.history()
    ]
    load_history(pg_conn, rows)
    settings = load_settings({"STATS_DATABASE_URL": database_url})
    scope = RunScope(tenant_id=examples.T, app_id=examples.A, triggered_from="app-run")

    async def read() -> list[DailyRow]:
        backend = Backend(database_url, settings)
        await backend.open()
        try:  # one day with runs and the NULL row: exactly one full page of two
            build = partial(daily.daily, scope, "UTC", DAILY_RUNS.sql, page=2)
            return await read_pages(backend, build, DailyRow, lambda row: row.day)
        finally:
            await backend.close()

    found = asyncio.run(asyncio.wait_for(read(), 30))
    assert [(row.day is None, row.unparsed_runs) for row in found] == [(False, 0), (True, 1)]


def test_with_a_retention_no_statement_reads_the_whole_logstore(
    sls_standin: Any, pg_conn: psycopg.Connection[Any]
) -> None:
    """`__time__ > 0` asks SLS for every write it holds, the scan its capacity limit warns about:
    with ALIYUN_SLS_LOGSTORE_TTL known, an open start reads only what the store still keeps."""
    now = int(datetime.now(UTC).timestamp())
    recent = [
        msgspec.structs.replace(row, time=now - 3_600, created_at="", started_at=_iso(now - 3_700))
        for row in examples.history()
    ]
    load_history(pg_conn, recent)
    sls_standin.counters.reset()
    env = {"STATS_DIALECT": "sls", "ALIYUN_SLS_LOGSTORE_TTL": "30"}
    with _client(sls_standin.url, **env) as client:
        assert client.get(f"{BASE}/statistics/daily-runs").json()["data"][0]["runs"] == 4
        assert client.get(f"{BASE}/runs", params={"triggered_from": "app-run"}).json()["data"]
        assert client.get(f"{BASE}/runs/{examples.R1}").status_code == 200
        assert client.get(f"{BASE}/runs/count", params={"triggered_from": "app-run"}).json()["total"] == 4
    statements = [seen.sql for seen in sls_standin.counters.statements() if "AS ok" not in seen.sql]
    assert len(statements) >= 5 and not [sql for sql in statements if "__time__ > 0" in sql]
    bounds = [int(sql.split("__time__ >= ", 1)[1].split()[0]) for sql in statements if "__time__ >= " in sql]
    assert bounds and min(bounds) >= now - 30 * 86_400 - 60


def _iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).replace(tzinfo=None).isoformat()
