"""Hostile values in every parameter of every route: a 400 naming it, and the table unchanged."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from litestar.testing import TestClient

from app.config import load_settings
from app.main import create_app
from app.stores.backend import Backend
from queries.scope import Query
from tests import examples
from tests.db import load_history
from tests.live import serve

HOSTILE = (
    "' OR '1'='1",
    "'; DROP TABLE workflow_execution; --",
    "1; SELECT pg_sleep(5)",
    "app-run\x00",
    "%27%20OR%201=1",
    "\u2019 OR 1=1 --",
    "x" * 5000,
)
BASE = f"/v1/tenants/{examples.T}/apps/{examples.A}"
QUERY_PARAMS = {
    "/statistics/daily-runs": ("start", "end", "timezone", "triggered_from"),
    "/statistics/daily-terminals": ("start", "end", "timezone", "triggered_from"),
    "/statistics/token-costs": ("start", "end", "timezone", "triggered_from"),
    "/statistics/average-interactions": ("start", "end", "timezone", "triggered_from"),
    "/runs/count": ("status", "time_range", "triggered_from"),
    "/runs": ("limit", "last_id", "status", "triggered_from"),
}


def _row_count(conn: psycopg.Connection[Any]) -> Any:
    return conn.execute("SELECT count(*), sum(total_tokens) FROM workflow_execution").fetchone()


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_in_every_parameter(
    client: TestClient[Any], pg_conn: psycopg.Connection[Any], value: str
) -> None:
    load_history(pg_conn, examples.history())
    before = _row_count(pg_conn)
    for path, names in QUERY_PARAMS.items():
        for name in names:
            answer = client.get(BASE + path, params={name: value})
            body = answer.json()
            assert answer.status_code == 400, (path, name)
            assert body["code"] == "invalid_param" and body["message"].startswith(name), (path, name)
    templates = (
        f"/v1/tenants/{{v}}/apps/{examples.A}/runs/count",
        f"/v1/tenants/{examples.T}/apps/{{v}}/runs",
        f"{BASE}/runs/{{v}}",
    )
    for template in templates:
        path = template.replace("{v}", quote(value, safe=""))
        answer = client.get(path)
        assert answer.status_code in (400, 404), path
        assert "Traceback" not in answer.text
    assert _row_count(pg_conn) == before


class BrokenBackend(Backend):
    """A backend that fails in a way nobody planned for (a bug, not an outage)."""

    async def fetch(self, query: Query, row_type: Any) -> Any:
        raise ZeroDivisionError("a bug")


def test_unexpected_errors_are_a_500_with_a_request_id_and_no_traceback(database_url: str) -> None:
    settings = load_settings({"STATS_DATABASE_URL": database_url})
    with TestClient(app=create_app(settings, BrokenBackend(database_url, settings))) as client:
        answer = client.get(f"{BASE}/runs/count")
    assert answer.status_code == 500
    body = answer.json()
    assert body["code"] == "internal_error" and body["status"] == 500
    assert answer.headers["x-request-id"] in body["message"]
    assert "ZeroDivisionError" not in answer.text and "Traceback" not in answer.text


def test_over_a_real_socket(database_url: str, pg_conn: psycopg.Connection[Any]) -> None:
    load_history(pg_conn, examples.history())
    settings = load_settings({"STATS_DATABASE_URL": database_url})
    app = create_app(settings, Backend(database_url, settings))
    with serve(app) as base_url, httpx.Client(base_url=base_url, timeout=10) as http:
        assert http.get("/readyz").json() == {"status": "ok", "circuits": {"logstore": "closed"}}
        runs = http.get(f"{BASE}/statistics/daily-runs", params={"timezone": "Asia/Shanghai"})
        assert runs.json() == {"data": [{"date": "2025-03-01", "runs": 1}, {"date": "2025-03-02", "runs": 3}]}
        assert runs.headers["x-cache"] == "miss" and runs.headers["x-request-id"]
        schema = http.get("/schema/openapi.json").json()
        assert "/v1/tenants/{tenant_id}/apps/{app_id}/runs/count" in schema["paths"]
        assert "/console/api/apps/{app_id}/workflow/statistics/daily-conversations" in schema["paths"]
        assert "RunDetail" in schema["components"]["schemas"]
