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

from app.answers import cut_fields
from app.backend import Backend
from app.config import load_settings
from app.main import create_app
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
