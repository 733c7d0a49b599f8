"""Faults and hostile input against the real service and the real PostgreSQL (loopback only,
bounded in time): slow queries, pool exhaustion, concurrent tenants, fuzzing, oversized input,
header injection, secrets in logs."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from app.config import load_settings
from app.main import create_app
from app.stores.backend import Backend
from tests import examples
from tests.db import load_history
from tests.live import get_all, serve

T, U, A = examples.T, examples.U, examples.A
BASE = f"/v1/tenants/{T}/apps/{A}"


@pytest.fixture(autouse=True)
def example_history(pg_conn: psycopg.Connection[Any]) -> None:
    load_history(pg_conn, examples.history())


@contextmanager
def table_locked(database_url: str) -> Iterator[None]:
    """Every query on workflow_execution blocks until the lock is released: a 'slow backend'."""
    with psycopg.connect(database_url) as locker:
        locker.execute("LOCK TABLE workflow_execution IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            locker.rollback()


def active_service_queries(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dify-stats' AND state = 'active'"
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("dialect", ["postgres", "sls"])
def test_a_slow_query_is_cancelled_on_the_server_and_answered_503(database_url: str, dialect: str) -> None:
    env = {"STATS_DATABASE_URL": database_url, "STATS_DIALECT": dialect, "STATS_QUERY_TIMEOUT": "1"}
    service_settings = load_settings(env)
    options = "-c search_path=sls_compat,pg_catalog,public" if dialect == "sls" else ""
    backend = Backend(database_url, service_settings, extra_options=options)
    with TestClient(app=create_app(service_settings, backend)) as client, table_locked(database_url):
        started = time.perf_counter()
        answer = client.get(f"{BASE}/runs/count")
        waited = time.perf_counter() - started
        assert answer.status_code == 503 and answer.headers["retry-after"]
        assert waited < service_settings.query_timeout + 1.5
        time.sleep(0.3)
        assert active_service_queries(database_url) == 0  # nothing left running on the server


def test_pool_exhaustion_waits_a_bounded_time_and_never_exceeds_the_pool(database_url: str) -> None:
    env = {"STATS_DATABASE_URL": database_url, "STATS_POOL_SIZE": "2", "STATS_QUERY_TIMEOUT": "1"}
    service_settings = load_settings(env)
    app = create_app(service_settings, Backend(database_url, service_settings))
    peak = [0]
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            peak[0] = max(peak[0], active_service_queries(database_url))
            time.sleep(0.05)

    paths = [f"{BASE}/runs/count?triggered_from={t}" for t in ("app-run", "debugging", "webhook", "plugin")]
    paths += [
        f"{BASE}/statistics/daily-runs?timezone={z}"
        for z in ("UTC", "Asia/Tokyo", "Europe/Paris", "Asia/Dubai")
    ]

    watcher = threading.Thread(target=watch)
    with serve(app) as base_url:
        with table_locked(database_url):
            watcher.start()
            started = time.perf_counter()
            answers = asyncio.run(get_all(base_url, [(path, {}) for path in paths]))
            elapsed = time.perf_counter() - started
            watching.set()
            watcher.join()
        assert [answer.status_code for answer in answers] == [503] * 8
        # Those holding a connection are cancelled after the timeout; the others give up waiting.
        assert elapsed < 2 * (service_settings.query_timeout + 1)
        assert 1 <= peak[0] <= 2
        assert asyncio.run(get_all(base_url, [(f"{BASE}/runs/count", {})]))[0].status_code == 200


def test_tenants_stay_isolated_under_concurrency(database_url: str) -> None:
    key_t, key_u = "key-of-tenant-t-0123456789", "key-of-tenant-u-0123456789"
    service_settings = load_settings(
        {"STATS_DATABASE_URL": database_url, "STATS_API_KEYS": f"{key_t}={T};{key_u}={U}"}
    )
    app = create_app(service_settings, Backend(database_url, service_settings))
    expected = {T: 4, U: 1}

    calls = []
    for n in range(40):
        tenant, key = (T, key_t) if n % 2 else (U, key_u)
        path = f"/v1/tenants/{tenant}/apps/{A}/runs/count?triggered_from=app-run"
        calls.append((tenant, path, {"Authorization": f"Bearer {key}"}))
    crossed = (
        f"/v1/tenants/{U}/apps/{A}/runs/count?triggered_from=app-run",
        {"Authorization": f"Bearer {key_t}"},
    )
    with serve(app) as base_url:
        answers = asyncio.run(get_all(base_url, [(path, headers) for _, path, headers in calls] + [crossed]))
    assert answers[-1].status_code == 403
    for (tenant, _, _), answer in zip(calls, answers[:-1], strict=True):
        assert answer.status_code == 200
        assert answer.json()["total"] == expected[tenant]


NATIVE_PARAMS = {
    "/statistics/daily-runs": ("start", "end", "timezone", "triggered_from"),
    "/statistics/token-costs": ("start", "end", "timezone", "triggered_from"),
    "/runs/count": ("status", "time_range", "triggered_from"),
    "/runs": ("limit", "last_id", "status", "triggered_from"),
}
_ERROR_SHAPE = {"code", "message", "status"}
FUZZED_NAMES = ("start", "end", "timezone", "triggered_from", "status", "time_range", "limit", "last_id")


@pytest.fixture(scope="module")
def fuzz_client(database_url: str) -> Iterator[TestClient[Any]]:
    service_settings = load_settings({"STATS_DATABASE_URL": database_url})
    with TestClient(app=create_app(service_settings, Backend(database_url, service_settings))) as client:
        yield client


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    path=st.sampled_from(sorted(NATIVE_PARAMS)),
    values=st.dictionaries(st.sampled_from(FUZZED_NAMES), st.text(max_size=60), max_size=4),
    segment=st.one_of(st.just(A), st.text(min_size=1, max_size=40)),
)
def test_fuzzed_parameters_only_ever_give_2xx_or_documented_4xx(
    fuzz_client: TestClient[Any],
    pg_conn: psycopg.Connection[Any],
    path: str,
    values: dict[str, str],
    segment: str,
) -> None:
    before = pg_conn.execute("SELECT count(*), sum(total_tokens) FROM workflow_execution").fetchone()
    url = f"/v1/tenants/{T}/apps/{quote(segment, safe='')}{path}"
    answer = fuzz_client.get(url, params=values)
    assert answer.status_code < 500, (url, values, answer.text)
    if answer.status_code >= 400:
        assert set(answer.json()) == _ERROR_SHAPE
    assert pg_conn.execute("SELECT count(*), sum(total_tokens) FROM workflow_execution").fetchone() == before


def test_oversized_bodies_and_strange_request_ids(fuzz_client: TestClient[Any]) -> None:
    huge = {"targets": [{"target": "daily_runs", "payload": {"app_id": "x" * 2_000_000}}], "range": {}}
    assert fuzz_client.post("/grafana/query", json=huge).status_code == 413
    long_value = fuzz_client.get(f"{BASE}/statistics/daily-runs", params={"start": "2025-01-01" * 5000})
    assert long_value.status_code == 400
    for offered in ("<script>alert(1)</script>", "a" * 200, "id with spaces", "x\u00e9"):
        answer = fuzz_client.get("/healthz", headers={"X-Request-Id": offered.encode("utf-8")})
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"]), offered
    assert (
        fuzz_client.get("/healthz", headers={"X-Request-Id": "trace-42.a_b"}).headers["x-request-id"]
        == "trace-42.a_b"
    )
    assert fuzz_client.get("/v1/tenants/..%2F..%2Fetc%2Fpasswd/apps/x/runs").status_code in (400, 404)


def test_secrets_never_reach_logs_or_error_bodies(capsys: pytest.CaptureFixture[str]) -> None:
    from app.logging import configure_logging

    secrets = ("AKIDSECRETID0001", "SKSECRETVALUE00042", "bearer-key-secret-000001", "cookie-secret-0007")
    env = {
        "STATS_DATABASE_URL": f"postgresql://{secrets[0]}:{secrets[1]}@127.0.0.1:9/project",
        "STATS_DIALECT": "sls",
        "STATS_QUERY_TIMEOUT": "0.5",
        "STATS_API_KEYS": f"{secrets[2]}=*",
        "DIFY_CONSOLE_API_URL": "http://127.0.0.1:9",
    }
    configure_logging("debug")
    service_settings = load_settings(env)
    bodies = []
    with TestClient(
        app=create_app(service_settings, Backend(service_settings.database_url or "", service_settings))
    ) as client:
        auth = {"Authorization": f"Bearer {secrets[2]}"}
        bodies.append(client.get(f"{BASE}/runs/count", headers=auth).text)
        bodies.append(client.get("/readyz").text)
        bodies.append(
            client.get(f"{BASE}/runs/count", headers={"Authorization": "Bearer wrong-but-secret-99"}).text
        )
        console = f"/console/api/apps/{A}/workflow-runs/count"
        bodies.append(
            client.get(console, headers={"Cookie": f"access_token={secrets[3]}", "X-CSRF-Token": "t"}).text
        )
    logged = capsys.readouterr()
    everything = logged.err + logged.out + "".join(bodies)
    assert "backend_unavailable" in everything  # the failures were logged...
    for secret in (*secrets, "wrong-but-secret-99"):
        assert secret not in everything  # ...without any credential


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_grafana_body = st.fixed_dictionaries(
    {},
    optional={
        "range": st.fixed_dictionaries({}, optional={"from": _json, "to": _json}) | _json,
        "targets": st.lists(
            st.fixed_dictionaries(
                {
                    "target": st.sampled_from(("daily_runs", "runs_by_status", "recent_runs"))
                    | st.text(max_size=10)
                },
                optional={
                    "payload": st.dictionaries(
                        st.sampled_from(("app_id", "timezone", "triggered_from")), _json
                    )
                },
            ),
            max_size=3,
        )
        | _json,
        "filters": st.lists(
            st.dictionaries(st.sampled_from(("key", "operator", "value")), _json), max_size=2
        ),
        "adhocFilters": _json,
    },
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    path=st.sampled_from(("/query", "/metrics", "/metric-payload-options", "/variable", "/tag-values")),
    body=_grafana_body | _json,
)
def test_fuzzed_grafana_bodies_only_ever_give_2xx_or_documented_4xx(
    fuzz_client: TestClient[Any], path: str, body: Any
) -> None:
    answer = fuzz_client.post(f"/grafana{path}", json=body)
    assert answer.status_code < 500, (path, body, answer.text)
    if answer.status_code >= 400:
        assert set(answer.json()) == _ERROR_SHAPE
