"""The Dify console drop-in paths, authorized by a fake Dify console on a real port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from litestar.testing import TestClient

from app.config import load_settings
from app.main import create_app
from app.stores.backend import Backend
from tests import examples
from tests.db import load_history
from tests.fake_dify import Account, serve_fake_dify
from tests.live import serve

A = examples.A
OTHER_APP = "a9000000-0000-4000-8000-0000000000a9"
ACCOUNTS = {
    "ada-token": Account(tenant_id=examples.T, timezone="Asia/Shanghai", apps=frozenset({A})),
    "bob-token": Account(
        tenant_id=examples.U, timezone="UTC", apps=frozenset({A}), forbidden_apps=frozenset()
    ),
    "eve-token": Account(
        tenant_id=examples.T, timezone="UTC", apps=frozenset(), forbidden_apps=frozenset({A})
    ),
}
ADA = {"Authorization": "Bearer ada-token"}
STATS = f"/console/api/apps/{A}/workflow/statistics"


@pytest.fixture
def console(
    database_url: str, pg_conn: psycopg.Connection[Any]
) -> Iterator[tuple[TestClient[Any], list[str]]]:
    load_history(pg_conn, examples.history())
    with serve_fake_dify(ACCOUNTS) as (dify_url, calls):
        settings = load_settings({"STATS_DATABASE_URL": database_url, "DIFY_CONSOLE_API_URL": dify_url})
        with TestClient(app=create_app(settings, Backend(database_url, settings))) as client:
            yield client, calls


def test_console_statistics_equal_the_native_answers_in_the_account_zone(
    console: tuple[TestClient[Any], list[str]],
) -> None:
    client, _ = console
    window = {"start": "2025-03-01 00:00", "end": "2025-03-03 00:00"}
    native = f"/v1/tenants/{examples.T}/apps/{A}/statistics"
    pairs = {
        "daily-conversations": "daily-runs",
        "daily-terminals": "daily-terminals",
        "token-costs": "token-costs",
        "average-app-interactions": "average-interactions",
    }
    for console_path, native_path in pairs.items():
        mine = client.get(f"{STATS}/{console_path}", params=window, headers=ADA)
        assert mine.status_code == 200, console_path
        theirs = client.get(f"{native}/{native_path}", params={**window, "timezone": "Asia/Shanghai"})
        assert mine.json() == theirs.json(), console_path
    runs = client.get(f"{STATS}/daily-conversations", params=window, headers=ADA).json()
    assert runs == {"data": [{"date": "2025-03-01", "runs": 1}, {"date": "2025-03-02", "runs": 3}]}


def test_console_runs_routes(console: tuple[TestClient[Any], list[str]]) -> None:
    client, _ = console
    base = f"/console/api/apps/{A}/workflow-runs"
    counts = client.get(f"{base}/count", params={"triggered_from": "app-run"}, headers=ADA).json()
    assert counts["total"] == 4
    page = client.get(base, params={"triggered_from": "app-run", "limit": "3"}, headers=ADA).json()
    assert [run["id"] for run in page["data"]] == [examples.R4, examples.R3, examples.R2] and page["has_more"]
    assert client.get(f"{base}/{examples.R1}", headers=ADA).json()["total_tokens"] == 25
    assert client.get(f"{base}/{examples.R6}", headers=ADA).status_code == 404  # tenant U's run
    # Bob's workspace is tenant U: the same app id shows only tenant U's run.
    bob = client.get(
        f"{base}/count", params={"triggered_from": "app-run"}, headers={"Authorization": "Bearer bob-token"}
    )
    assert bob.json()["total"] == 1


def test_dify_verdicts_pass_through(console: tuple[TestClient[Any], list[str]]) -> None:
    client, _ = console
    anonymous = client.get(f"{STATS}/daily-conversations")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthorized")
    wrong = client.get(f"{STATS}/daily-conversations", headers={"Authorization": "Bearer nope"})
    assert wrong.json() == {"code": "unauthorized", "message": "Invalid token.", "status": 401}
    assert wrong.headers["www-authenticate"] == 'Bearer realm="api"'  # Dify's challenge, passed on
    forbidden = client.get(f"{STATS}/token-costs", headers={"Authorization": "Bearer eve-token"})
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
    elsewhere = client.get(f"/console/api/apps/{OTHER_APP}/workflow-runs/count", headers=ADA)
    assert elsewhere.json() == {"code": "app_not_found", "message": "App not found.", "status": 404}


def test_cookie_sessions_need_the_csrf_header(console: tuple[TestClient[Any], list[str]]) -> None:
    client, _ = console
    cookies = "access_token=ada-token; csrf_token=abc123"
    no_header = client.get(f"{STATS}/daily-terminals", headers={"Cookie": cookies})
    assert no_header.status_code == 401
    with_header = client.get(
        f"{STATS}/daily-terminals", headers={"Cookie": cookies, "X-CSRF-Token": "abc123"}
    )
    assert with_header.status_code == 200


def test_verdicts_are_cached(console: tuple[TestClient[Any], list[str]]) -> None:
    client, calls = console
    for _ in range(3):
        assert client.get(f"{STATS}/token-costs", headers=ADA).status_code == 200
    assert calls.count("app") == 1 and calls.count("profile") == 1


@pytest.mark.parametrize("token", ["broken", "garbage"])
def test_dify_misbehaving_is_a_503_never_access(
    console: tuple[TestClient[Any], list[str]], token: str
) -> None:
    client, _ = console
    answer = client.get(f"{STATS}/token-costs", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 503
    assert answer.json()["code"] == "dify_unavailable"


def test_dify_slow_is_a_503_after_the_timeout(database_url: str) -> None:
    with serve_fake_dify(ACCOUNTS) as (dify_url, _):
        env = {
            "STATS_DATABASE_URL": database_url,
            "DIFY_CONSOLE_API_URL": dify_url,
            "STATS_DIFY_TIMEOUT": "0.5",
        }
        settings = load_settings(env)
        with TestClient(app=create_app(settings, Backend(database_url, settings))) as client:
            started = time.perf_counter()
            answer = client.get(f"{STATS}/token-costs", headers={"Authorization": "Bearer slow"})
            assert answer.status_code == 503 and time.perf_counter() - started < 2.5


def test_dify_down_is_a_503(database_url: str) -> None:
    settings = load_settings(
        {"STATS_DATABASE_URL": database_url, "DIFY_CONSOLE_API_URL": "http://127.0.0.1:9"}
    )
    with TestClient(app=create_app(settings, Backend(database_url, settings))) as client:
        answer = client.get(f"{STATS}/token-costs", headers=ADA)
        assert answer.status_code == 503 and answer.headers["retry-after"]


def test_bad_app_id_is_refused_before_asking_dify(console: tuple[TestClient[Any], list[str]]) -> None:
    client, calls = console
    answer = client.get("/console/api/apps/..%2F..%2Fadmin/workflow-runs/count", headers=ADA)
    assert answer.status_code in (400, 404)
    assert calls == []


def test_parallel_dashboard_requests_cost_dify_one_round(
    database_url: str, pg_conn: psycopg.Connection[Any]
) -> None:
    import asyncio

    from tests.live import get_all, serve

    load_history(pg_conn, examples.history())
    with serve_fake_dify(ACCOUNTS) as (dify_url, calls):
        settings = load_settings({"STATS_DATABASE_URL": database_url, "DIFY_CONSOLE_API_URL": dify_url})
        paths = ["daily-conversations", "daily-terminals", "token-costs", "average-app-interactions"]
        with serve(create_app(settings, Backend(database_url, settings))) as base_url:
            answers = asyncio.run(get_all(base_url, [(f"{STATS}/{path}", ADA) for path in paths]))
    assert [answer.status_code for answer in answers] == [200] * 4
    assert (calls.count("app"), calls.count("workspace"), calls.count("profile")) == (1, 1, 1)


def test_stats_dify_timeout_bounds_the_whole_check(database_url: str) -> None:
    """Three calls of 0.4 s each against a 1 s budget: a 503 after about 1 s, not a grant at 1.2 s."""
    with serve_fake_dify(ACCOUNTS) as (dify_url, calls):
        env = {
            "STATS_DATABASE_URL": database_url,
            "DIFY_CONSOLE_API_URL": dify_url,
            "STATS_DIFY_TIMEOUT": "1",
        }
        settings = load_settings(env)
        with TestClient(app=create_app(settings, Backend(database_url, settings))) as client:
            started = time.perf_counter()
            answer = client.get(f"{STATS}/token-costs", headers={"Authorization": "Bearer sluggish"})
            waited = time.perf_counter() - started
    assert answer.status_code == 503 and answer.json()["code"] == "dify_unavailable"
    # The calls about access follow one another; the permission is asked alongside them.
    assert waited < 1.5 and [call for call in calls if call != "statistics"][:2] == ["app", "workspace"]


@contextmanager
def trickling_server(seconds: float) -> Iterator[str]:
    """A server on 127.0.0.1 that answers every request with headers, then one body byte every
    0.2 s, for at most `seconds`: no single read ever waits long enough to time out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
            until = time.monotonic() + seconds
            while not stop.is_set() and time.monotonic() < until:
                try:
                    conn.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.2)

    def accept() -> None:
        until = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < until:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        acceptor.join(timeout=2)
        listener.close()


def test_a_dify_trickling_bytes_is_cut_off_at_the_deadline(database_url: str) -> None:
    with trickling_server(seconds=15) as dify_url:
        env = {
            "STATS_DATABASE_URL": database_url,
            "DIFY_CONSOLE_API_URL": dify_url,
            "STATS_DIFY_TIMEOUT": "1",
        }
        settings = load_settings(env)
        with serve(create_app(settings, Backend(database_url, settings))) as base_url:
            started = time.perf_counter()
            answer = httpx.get(base_url + f"{STATS}/token-costs", headers=ADA, timeout=20)
            waited = time.perf_counter() - started
    assert answer.status_code == 503 and answer.json()["code"] == "dify_unavailable"
    assert waited < 2


def test_several_cookie_headers_reach_dify_joined_and_our_api_key_never_does(
    database_url: str, pg_conn: psycopg.Connection[Any]
) -> None:
    load_history(pg_conn, examples.history())
    key = "dify-stats-key-0123456789"
    received: list[dict[str, str]] = []
    with serve_fake_dify(ACCOUNTS, received) as (dify_url, _):
        env = {
            "STATS_DATABASE_URL": database_url,
            "DIFY_CONSOLE_API_URL": dify_url,
            "STATS_API_KEYS": f"{key}=*",
        }
        settings = load_settings(env)
        with serve(create_app(settings, Backend(database_url, settings))) as base_url:
            headers = [
                ("Cookie", "access_token=ada-token"),
                ("Cookie", "csrf_token=abc123"),
                ("X-CSRF-Token", "abc123"),
                ("Authorization", f"Bearer {key}"),
            ]
            answer = httpx.get(base_url + f"{STATS}/daily-terminals", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert received and all(
        seen.get("cookie") == "access_token=ada-token; csrf_token=abc123" for seen in received
    )
    assert all(key not in str(seen) and "authorization" not in seen for seen in received)
