"""A real PostgreSQL stopped under the running service, then started again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
from litestar.testing import TestClient

from app.config import load_settings
from app.embedded import ensure_schema
from app.main import create_app
from app.stores.backend import Backend
from tests import examples
from tests.db import load_history

BASE = f"/v1/tenants/{examples.T}/apps/{examples.A}"


def own_database(data: Path) -> tuple[Any, str]:
    """A PostgreSQL of this test's own (it will be stopped), holding the example history."""
    import pgserver

    server = pgserver.get_server(data, cleanup_mode="stop")
    url: str = server.get_uri()
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        load_history(conn, examples.history())
    return server, url


def test_stale_answers_while_down_and_recovery_after_restart(tmp_path: Path) -> None:
    import pgserver

    data = tmp_path / "pg"
    server, url = own_database(data)
    settings = load_settings({"STATS_DATABASE_URL": url, "STATS_CACHE_TTL": "0", "STATS_QUERY_TIMEOUT": "2"})
    try:
        with TestClient(app=create_app(settings, Backend(url, settings))) as client:
            fresh = client.get(f"{BASE}/runs/count", params={"triggered_from": "app-run"})
            assert (fresh.status_code, fresh.headers["x-cache"]) == (200, "miss")

            server.cleanup()  # pg_ctl stop: the backend is gone
            started = time.perf_counter()
            stale = client.get(f"{BASE}/runs/count", params={"triggered_from": "app-run"})
            assert (stale.status_code, stale.headers["x-cache"], stale.json()) == (200, "stale", fresh.json())
            assert time.perf_counter() - started < settings.query_timeout + 1
            never_seen = client.get(f"{BASE}/runs", params={"triggered_from": "app-run"})
            assert never_seen.status_code == 503 and never_seen.headers["retry-after"]
            assert client.get("/readyz").status_code == 503

            server = pgserver.get_server(data, cleanup_mode="stop")  # started again, same socket
            deadline = time.monotonic() + 15
            while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            again = client.get(f"{BASE}/runs/count", params={"triggered_from": "app-run"})
            assert (again.status_code, again.headers["x-cache"], again.json()) == (200, "miss", fresh.json())
    finally:
        server.cleanup()


def test_database_stopping_under_an_in_flight_request(tmp_path: Path) -> None:
    """A query blocked on a lock when PostgreSQL shuts down: a 503 within the timeout, never a
    500 or a hang; the service answers again once PostgreSQL is back."""
    import asyncio
    import threading

    import pgserver

    from tests.live import get_all, serve

    data = tmp_path / "pg"
    server, url = own_database(data)
    settings = load_settings({"STATS_DATABASE_URL": url, "STATS_QUERY_TIMEOUT": "3"})
    answers: list[Any] = []
    try:
        with serve(create_app(settings, Backend(url, settings))) as base_url:
            locker = psycopg.connect(url)
            locker.execute("LOCK TABLE workflow_execution IN ACCESS EXCLUSIVE MODE")
            request = threading.Thread(
                target=lambda: answers.extend(asyncio.run(get_all(base_url, [(f"{BASE}/runs/count", {})])))
            )
            started = time.perf_counter()
            request.start()
            time.sleep(0.5)  # the request is now waiting on the lock, inside PostgreSQL
            server.cleanup()  # pg_ctl stop (fast): sessions are terminated
            request.join(timeout=settings.query_timeout + 2)
            assert not request.is_alive()
            assert answers[0].status_code == 503
            assert time.perf_counter() - started < settings.query_timeout + 1.5
            locker.close()
            server = pgserver.get_server(data, cleanup_mode="stop")
            deadline = time.monotonic() + 15
            status = 0
            while status != 200 and time.monotonic() < deadline:
                status = asyncio.run(get_all(base_url, [(f"{BASE}/runs/count", {})]))[0].status_code
                time.sleep(0.2)
            assert status == 200
    finally:
        server.cleanup()
