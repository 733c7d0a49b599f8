"""The running service: health, readiness, the daily-runs route, and the embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from litestar.testing import TestClient

from app import __version__
from app.config import load_settings
from app.main import create_app
from app.stores.backend import Backend
from tests import examples
from tests.db import load_history

ROUTE = f"/v1/tenants/{examples.T}/apps/{examples.A}/statistics/daily-runs"


def test_healthz_and_readyz(client: TestClient[Any]) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "version": __version__}
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok", "circuits": {"logstore": "closed"}})
    assert ready.headers["x-request-id"]


def test_readyz_is_503_with_a_reason_when_the_backend_is_down(tmp_path: Path) -> None:
    settings = load_settings({"STATS_QUERY_TIMEOUT": "0.5"})
    dead = Backend(f"postgresql://nobody@/postgres?host={tmp_path}&connect_timeout=1", settings)
    with TestClient(app=create_app(settings, dead)) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["status"] == "unavailable" and "backend" in answer.json()["reason"]
        route = client.get(ROUTE)
        assert route.status_code == 503
        assert route.json() == {
            "code": "backend_unavailable",
            "message": "the statistics backend is not answering; try again shortly",
            "status": 503,
        }
        assert route.headers["retry-after"]


def test_daily_runs_route_on_a_hand_checked_history(
    client: TestClient[Any], pg_conn: psycopg.Connection[Any]
) -> None:
    load_history(pg_conn, examples.history())
    shanghai = client.get(
        ROUTE, params={"start": "2025-03-01", "end": "2025-03-03", "timezone": "Asia/Shanghai"}
    )
    assert shanghai.status_code == 200
    assert shanghai.json() == {"data": [{"date": "2025-03-01", "runs": 1}, {"date": "2025-03-02", "runs": 3}]}
    # Dify's console format, naive in the zone; end exclusive.
    dify_style = client.get(
        ROUTE, params={"start": "2025-03-02 00:00", "end": "2025-03-02 01:30", "timezone": "Asia/Shanghai"}
    )
    # r2 is created at 00:00 local (in); r3 at exactly 01:30 local, the exclusive end (out).
    assert dify_style.json() == {"data": [{"date": "2025-03-02", "runs": 1}]}
    assert client.get(ROUTE).json() == {"data": [{"date": "2025-03-01", "runs": 4}]}  # UTC, app-run
    assert client.get(ROUTE, params={"triggered_from": "debugging"}).json() == {
        "data": [{"date": "2025-03-02", "runs": 1}]
    }
    assert client.get(ROUTE, params={"start": "2025-03-01", "end": "2025-03-01"}).json() == {"data": []}


def test_daily_runs_route_rejects_bad_input_naming_the_parameter(client: TestClient[Any]) -> None:
    cases = {
        "timezone": {"timezone": "Mars/Olympus"},
        "start": {"start": "yesterday"},
        "triggered_from": {"triggered_from": "app-run' OR '1'='1"},
        "end": {"start": "2020-01-01", "end": "2025-01-01"},
    }
    for name, params in cases.items():
        answer = client.get(ROUTE, params=params)
        assert answer.status_code == 400, name
        assert answer.json()["code"] == "invalid_param" and answer.json()["message"].startswith(name), name
    assert client.get(ROUTE.replace(examples.T, "not-a-uuid")).json()["message"].startswith("tenant_id")
    assert client.get("/v1/nowhere").status_code == 404
    assert client.post(ROUTE).status_code == 405


def test_embedded_start_loads_demo_once_and_reuses_it(tmp_path: Path) -> None:
    from app.embedded import busiest_app, start_embedded

    server, url = start_embedded(str(tmp_path / "data"), demo_runs=300)
    try:
        with psycopg.connect(url) as conn:
            first = conn.execute(
                "SELECT count(DISTINCT id), count(DISTINCT tenant_id), count(DISTINCT app_id), "
                "count(DISTINCT status), count(DISTINCT triggered_from) FROM workflow_execution"
            ).fetchone()
            assert first is not None and first[0] == 300 and first[1:3] == (3, 6)
            assert busiest_app(conn) is not None
        _, again = start_embedded(str(tmp_path / "data"), demo_runs=300)
        with psycopg.connect(again) as conn:
            assert conn.execute("SELECT count(DISTINCT id) FROM workflow_execution").fetchone() == (300,)
    finally:
        server.cleanup()
