"""Hostile and heavy traffic against the real service on loopback and the real PostgreSQL:
abandoned and failed requests leave nothing running on the server, the query cap, one tenant
cannot take the whole pool or cache, a store outage fails fast and recovers in seconds, and
health stays answerable while the admission limit turns excess requests away."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from litestar.testing import TestClient

from app.config import load_settings
from app.core.cache import AnswerCache
from app.main import create_app
from app.stores.backend import Backend
from tests import examples
from tests.db import load_history
from tests.live import serve
from tests.test_backend_down import own_database
from tests.test_reliability import table_locked

T, U, A = examples.T, examples.U, examples.A
BASE = f"/v1/tenants/{T}/apps/{A}"
ZONES = ("UTC", "Asia/Tokyo", "Europe/Paris", "Asia/Dubai", "America/New_York", "Asia/Kolkata")


@pytest.fixture(autouse=True)
def example_history(pg_conn: psycopg.Connection[Any]) -> None:
    load_history(pg_conn, examples.history())


def running_queries(database_url: str, like: str | None = None) -> int:
    """The service's statements running on the server (those whose text matches `like`)."""
    sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dify-stats' AND state = 'active'"
    with psycopg.connect(database_url, autocommit=True) as watcher:
        if like is None:
            row = watcher.execute(sql).fetchone()
        else:
            row = watcher.execute(sql + " AND query LIKE %s", (like,)).fetchone()
    return int(row[0]) if row else 0


def until_none_running(database_url: str, seconds: float) -> float:
    """Seconds until no service statement runs on the server (or `seconds`, if some still do)."""
    started = time.monotonic()
    while running_queries(database_url) and time.monotonic() - started < seconds:
        time.sleep(0.05)
    return time.monotonic() - started


def daily_paths(tenant: str, count: int) -> list[str]:
    """Distinct uncached requests (one per zone, then per trigger source)."""
    triggers = ("app-run", "debugging", "webhook")
    return [
        f"/v1/tenants/{tenant}/apps/{A}/statistics/daily-runs?timezone={zone}&triggered_from={trigger}"
        for trigger in triggers
        for zone in ZONES
    ][:count]


def test_a_client_that_disconnects_leaves_no_query_running(database_url: str) -> None:
    settings = load_settings({"STATS_DATABASE_URL": database_url, "STATS_QUERY_TIMEOUT": "30"})
    with serve(create_app(settings, Backend(database_url, settings))) as base_url:
        with table_locked(database_url):
            with pytest.raises(httpx.ReadTimeout):  # the client gives up after 1 s and hangs up
                httpx.get(f"{base_url}{BASE}/runs/count", timeout=1)
            assert until_none_running(database_url, 3) < 3  # not after the 30 s query timeout
        assert httpx.get(f"{base_url}{BASE}/runs/count", timeout=10).status_code == 200


def test_a_failed_request_cancels_its_other_statements(database_url: str, tmp_path: Path) -> None:
    """Two sources: Dify's database is down, so the request fails at once; the LogStore's half of
    the same request, waiting on a lock, is cancelled on the server instead of running on."""
    since = "2025-03-02T00:00:00+00:00"
    settings = load_settings(
        {
            "STATS_DATABASE_URL": database_url,
            "STATS_DIFY_DATABASE_URL": "postgresql://nobody@dify-db/dify",
            "STATS_LOGSTORE_SINCE": since,
            "STATS_QUERY_TIMEOUT": "30",
        }
    )
    down = Backend(
        f"postgresql://nobody@/dify?host={tmp_path}", settings, dialect="postgres", name="workflow_runs"
    )
    app = create_app(settings, Backend(database_url, settings), down)
    spanning = f"{BASE}/statistics/daily-runs?start=2025-03-01&end=2025-03-04&timezone=UTC"
    with serve(app) as base_url, table_locked(database_url):
        started = time.monotonic()
        answer = httpx.get(base_url + spanning, timeout=30)
        assert answer.status_code == 503 and answer.json()["code"] == "backend_unavailable"
        assert time.monotonic() - started < 5
        assert until_none_running(database_url, 3) < 3


def test_the_query_cap_is_a_400_in_difys_shape(database_url: str) -> None:
    """A run list page of an app without recent runs tries two recent windows, then the whole
    history: three statements, over a cap of two."""
    settings = load_settings({"STATS_DATABASE_URL": database_url, "STATS_MAX_QUERIES_PER_REQUEST": "2"})
    with TestClient(app=create_app(settings, Backend(database_url, settings))) as client:
        assert client.get(f"{BASE}/runs/count").status_code == 200  # one statement: within the cap
        answer = client.get(f"{BASE}/runs", params={"triggered_from": "app-run"})
        assert answer.status_code == 400, answer.text
        assert set(answer.json()) == {"code", "message", "status"}
        assert answer.json()["code"] == "too_many_queries" and answer.json()["status"] == 400
        assert "STATS_MAX_QUERIES_PER_REQUEST" in answer.json()["message"]


def test_one_tenant_holds_at_most_its_share_of_the_pool(database_url: str) -> None:
    """Pool of 4, share 0.5: six requests of tenant T run two statements; tenant U still gets one."""
    env = {
        "STATS_DATABASE_URL": database_url,
        "STATS_POOL_SIZE": "4",
        "STATS_TENANT_SHARE": "0.5",
        "STATS_QUERY_TIMEOUT": "3",
    }
    settings = load_settings(env)
    flood = daily_paths(T, 6)
    with serve(create_app(settings, Backend(database_url, settings))) as base_url:

        async def scenario() -> tuple[int, int, list[int]]:
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
                sent = [asyncio.create_task(client.get(path)) for path in flood]
                await asyncio.sleep(0.3)
                other = asyncio.create_task(client.get(f"/v1/tenants/{U}/apps/{A}/runs/count"))
                await asyncio.sleep(1.2)
                # pg_stat_activity keeps the first 1 kB of a statement: the tenant id is beyond,
                # so T's are told apart by their kind (daily), U's is a count by status.
                seen = (
                    running_queries(database_url, "%AS day%"),
                    running_queries(database_url, "%SELECT status%"),
                )
                answers = await asyncio.gather(*sent, other)
                return seen[0], seen[1], [answer.status_code for answer in answers]

        with table_locked(database_url):
            of_t, of_u, statuses = asyncio.run(scenario())
    assert of_t == 2  # its share: half of the pool
    assert of_u == 1  # the other tenant was not starved of a connection
    assert set(statuses) == {503}  # the lock outlasted the query timeout for everyone


def test_one_tenant_cannot_flush_the_others_cache_entries() -> None:
    cache = AnswerCache(max_entries=10, stale_max=0, tenant_share=0.5)
    for n in range(3):
        cache.put(("quiet", n), msgspec.UNSET, 60, tenant="quiet")
    for n in range(100):
        cache.put(("flood", n), msgspec.UNSET, 60, tenant="flood")
    assert cache.tenant_entries("quiet") == 3
    assert all(cache.peek(("quiet", n), tenant="quiet") is msgspec.UNSET for n in range(3))
    assert cache.tenant_entries("flood") == 5  # its own oldest went, nobody else's
    assert cache.peek(("flood", 99), tenant="flood") is msgspec.UNSET
    assert cache.peek(("flood", 0), tenant="flood") is None
    assert len(cache) == 8


def test_a_shared_load_outlives_a_leaving_caller_and_stops_with_the_last() -> None:
    cache = AnswerCache(max_entries=10, stale_max=0)
    started, finished = asyncio.Event(), asyncio.Event()
    cancelled = []

    async def slow() -> str:
        started.set()
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        finished.set()
        return "answer"

    async def scenario() -> tuple[str, bool]:
        first = asyncio.create_task(cache.get_or_load("k", 60, slow, tenant="t"))
        second = asyncio.create_task(cache.get_or_load("k", 60, slow, tenant="t"))
        await started.wait()
        first.cancel()  # one caller goes; the other still needs the load
        answer, _ = await second
        lonely = asyncio.create_task(cache.get_or_load("other", 60, slow, tenant="t"))
        await asyncio.sleep(0.05)
        lonely.cancel()  # the only caller goes: the load stops
        await asyncio.sleep(0.05)
        return answer, bool(cancelled)

    assert asyncio.run(scenario()) == ("answer", True)


def test_an_outage_fails_fast_and_recovery_takes_seconds(tmp_path: Path) -> None:
    import pgserver

    data = tmp_path / "pg"
    server, url = own_database(data)
    settings = load_settings({"STATS_DATABASE_URL": url, "STATS_CACHE_TTL": "0", "STATS_QUERY_TIMEOUT": "30"})
    count = f"{BASE}/runs/count"
    try:
        with TestClient(app=create_app(settings, Backend(url, settings))) as client:
            fresh = client.get(count)
            assert fresh.status_code == 200
            server.cleanup()  # pg_ctl stop
            started = time.monotonic()
            first = client.get(count)  # finds out: about FIRST_WAIT + one probe
            assert (first.status_code, first.headers["x-cache"]) == (200, "stale")
            assert time.monotonic() - started < 3
            for path in (count, f"{BASE}/runs", count, f"{BASE}/runs"):
                started = time.monotonic()
                answer = client.get(path)
                assert answer.status_code in (200, 503) and time.monotonic() - started < 1, path
                assert answer.status_code == 503 or answer.headers["x-cache"] == "stale"
            started = time.monotonic()
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["circuits"] == {"logstore": "open"}
            assert time.monotonic() - started < 2

            server = pgserver.get_server(data, cleanup_mode="stop")
            back = time.monotonic()
            while time.monotonic() - back < 10:
                answer = client.get(f"{BASE}/runs")
                if answer.status_code == 200:
                    break
                time.sleep(0.1)
            assert answer.status_code == 200 and answer.headers["x-cache"] == "miss"
            assert time.monotonic() - back < 5  # psycopg_pool's back-off alone took up to 46 s
            assert client.get("/readyz").json() == {"status": "ok", "circuits": {"logstore": "closed"}}
    finally:
        server.cleanup()


def test_excess_requests_are_turned_away_while_health_answers(database_url: str) -> None:
    env = {
        "STATS_DATABASE_URL": database_url,
        "STATS_MAX_INFLIGHT": "2",
        "STATS_TENANT_SHARE": "1",  # the whole limit for one tenant here
        "STATS_QUERY_TIMEOUT": "3",
    }
    settings = load_settings(env)
    with serve(create_app(settings, Backend(database_url, settings))) as base_url:

        async def scenario() -> tuple[list[httpx.Response], float, float, float]:
            limits = httpx.Limits(max_connections=20)
            async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as client:
                held = [asyncio.create_task(client.get(path)) for path in daily_paths(T, 2)]
                await asyncio.sleep(0.3)
                started = time.monotonic()
                refused = await asyncio.gather(*(client.get(path) for path in daily_paths(U, 6)))
                refusing = time.monotonic() - started
                started = time.monotonic()
                assert (await client.get("/healthz")).status_code == 200
                health = time.monotonic() - started
                started = time.monotonic()
                assert (await client.get("/readyz")).status_code == 200
                ready = time.monotonic() - started
                await asyncio.gather(*held)
                return refused, refusing, health, ready

        with table_locked(database_url):
            refused, refusing, health, ready = asyncio.run(scenario())
    assert [answer.status_code for answer in refused] == [503] * 6
    assert all(answer.headers["retry-after"] and answer.json()["code"] == "overloaded" for answer in refused)
    assert refusing < 1 and health < 1 and ready < 2
