"""The native HTTP API end to end over the test PostgreSQL: answers, errors, keys, cache."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import msgspec
import psycopg
import pytest
from litestar.testing import TestClient

from app.config import Settings, load_settings
from app.core.measures import DAILY_MEASURES
from app.main import create_app
from app.stores.backend import Backend
from queries.scope import Query
from tests import examples
from tests.db import load_history
from tests.live import get_all, serve

T, U, A = examples.T, examples.U, examples.A
BASE = f"/v1/tenants/{T}/apps/{A}"
KEY_T = "key-for-tenant-t-0123456789"
KEY_ALL = "a2V5LWZvci1ldmVyeS10ZW5hbnQ=="  # base64, as keys often are: it ends in `=`


class CountingBackend(Backend):
    """The real backend, recording every query's parameters (and optionally slowed down)."""

    def __init__(self, *args: Any, delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queries: list[dict[str, object]] = []
        self.delay = delay

    async def fetch(self, query: Query, row_type: Any) -> Any:
        self.queries.append(query.params)
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().fetch(query, row_type)


@pytest.fixture(autouse=True)
def example_history(pg_conn: psycopg.Connection[Any]) -> None:
    load_history(pg_conn, examples.history())


def make_settings(database_url: str, **env: str) -> Settings:
    return load_settings({"STATS_DATABASE_URL": database_url, **env})


@pytest.fixture
def keyed(database_url: str) -> Iterator[TestClient[Any]]:
    settings = make_settings(database_url, STATS_API_KEYS=f"{KEY_T}={T};{KEY_ALL}=*")
    with TestClient(app=create_app(settings, Backend(database_url, settings))) as client:
        yield client


def test_every_daily_measure(client: TestClient[Any]) -> None:
    params = {"start": "2025-03-01", "end": "2025-03-03", "timezone": "Asia/Shanghai"}
    expected = {
        "daily-runs": [{"date": "2025-03-01", "runs": 1}, {"date": "2025-03-02", "runs": 3}],
        "daily-terminals": [
            {"date": "2025-03-01", "terminal_count": 1},
            {"date": "2025-03-02", "terminal_count": 2},
        ],
        "token-costs": [{"date": "2025-03-01", "token_count": 25}, {"date": "2025-03-02", "token_count": 12}],
        "average-interactions": [
            {"date": "2025-03-01", "interactions": 1.0},
            {"date": "2025-03-02", "interactions": 1.5},
        ],
        "daily-status": [
            {
                "date": "2025-03-01",
                "succeeded": 1,
                "failed": 0,
                "stopped": 0,
                "partial_succeeded": 0,
                "running": 0,
                "paused": 0,
                "failure_rate": 0.0,
            },
            {
                "date": "2025-03-02",
                "succeeded": 0,
                "failed": 1,
                "stopped": 0,
                "partial_succeeded": 0,
                "running": 1,
                "paused": 1,
                "failure_rate": 1.0,
            },
        ],
        "daily-duration": [
            {"date": "2025-03-01", "count": 1, "p50": 4.9, "p95": 4.9, "p99": 4.9, "max": 4.9},
            {"date": "2025-03-02", "count": 1, "p50": 1.5, "p95": 1.5, "p99": 1.5, "max": 1.5},
        ],
    }
    assert len(expected) == len(DAILY_MEASURES)
    for path, data in expected.items():
        answer = client.get(f"{BASE}/statistics/{path}", params=params)
        assert answer.status_code == 200, path
        assert answer.json() == {"data": data}, path
        assert answer.headers["x-cache"] in {"miss", "hit", "partial"}


def test_counts(client: TestClient[Any]) -> None:
    everything = client.get(f"{BASE}/runs/count", params={"triggered_from": "app-run"}).json()
    assert everything == {
        "total": 4,
        "running": 1,
        "succeeded": 1,
        "failed": 1,
        "stopped": 0,
        "partial_succeeded": 0,
    }
    paused = client.get(f"{BASE}/runs/count", params={"triggered_from": "app-run", "status": "paused"}).json()
    assert paused == {
        "total": 1,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "stopped": 0,
        "partial_succeeded": 0,
    }
    failed = client.get(f"{BASE}/runs/count", params={"triggered_from": "app-run", "status": "failed"}).json()
    assert (failed["total"], failed["failed"], failed["succeeded"]) == (1, 1, 0)
    # Dify's default trigger source for counts is debugging: r5 only.
    assert client.get(f"{BASE}/runs/count").json()["succeeded"] == 1
    recent = client.get(f"{BASE}/runs/count", params={"triggered_from": "app-run", "time_range": "7d"}).json()
    assert recent["total"] == 0  # the example history is from March 2025


def test_run_list_pages_and_detail(client: TestClient[Any]) -> None:
    first = client.get(f"{BASE}/runs", params={"triggered_from": "app-run", "limit": "2"}).json()
    assert (first["limit"], first["has_more"]) == (2, True)
    assert [run["id"] for run in first["data"]] == [examples.R4, examples.R3]
    assert first["data"][0] == {
        "id": examples.R4, "version": "draft", "status": "paused", "elapsed_time": 0.0, "total_tokens": 2,
        "total_steps": 1, "created_by_role": "end_user", "created_by": examples.BOB, "created_at": 1740852000,
        "finished_at": None, "exceptions_count": 0, "retry_index": 0,
    }  # fmt: skip
    second = client.get(
        f"{BASE}/runs", params={"triggered_from": "app-run", "limit": "2", "last_id": examples.R3}
    ).json()
    assert ([run["id"] for run in second["data"]], second["has_more"]) == ([examples.R2, examples.R1], False)
    detail = client.get(f"{BASE}/runs/{examples.R2}")
    assert detail.status_code == 200
    body = detail.json()
    assert (body["status"], body["error"], body["outputs"], body["tenant_id"]) == ("failed", "boom", {}, T)
    assert client.get(f"{BASE}/runs/{examples.R6}").status_code == 404  # tenant U's run
    assert client.get(f"/v1/tenants/{U}/apps/{A}/runs/{examples.R6}").json()["total_tokens"] == 50


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/runs", {"limit": "0"}, "limit"),
        ("/runs", {"limit": "101"}, "limit"),
        ("/runs", {"limit": "ten"}, "limit"),
        ("/runs", {"status": "done"}, "status"),
        ("/runs", {"last_id": "../../etc/passwd"}, "last_id"),
        ("/runs", {"last_id": "90000000-0000-4000-8000-000000000000"}, "last_id"),
        ("/runs/count", {"time_range": "7 days"}, "time_range"),
        ("/runs/count", {"time_range": "401d"}, "time_range"),
        ("/runs/count", {"triggered_from": "'; DROP TABLE workflow_execution; --"}, "triggered_from"),
        ("/runs/not-a-run", {}, "run_id"),
        ("/statistics/token-costs", {"start": "2025-13-01"}, "start"),
        ("/statistics/daily-terminals", {"timezone": "../../../etc/localtime"}, "timezone"),
        ("/statistics/average-interactions", {"start": "2025-03-02", "end": "2025-03-01"}, "start"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(
    client: TestClient[Any], pg_conn: psycopg.Connection[Any], path: str, params: dict[str, str], name: str
) -> None:
    answer = client.get(BASE + path, params=params)
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == "invalid_param" and body["status"] == 400 and body["message"].startswith(name)
    assert pg_conn.execute("SELECT count(*) FROM workflow_execution").fetchone() == (len(examples.history()),)


def test_api_keys_scope_tenants(keyed: TestClient[Any]) -> None:
    path = f"{BASE}/runs/count"
    missing = keyed.get(path)
    assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"
    assert keyed.get(path, headers={"Authorization": "Bearer wrong-key-0123456789"}).status_code == 401
    assert keyed.get(path, headers={"Authorization": f"Bearer {KEY_T}"}).status_code == 200
    other = keyed.get(f"/v1/tenants/{U}/apps/{A}/runs/count", headers={"Authorization": f"Bearer {KEY_T}"})
    assert other.status_code == 403 and other.json()["code"] == "forbidden"
    everyone = keyed.get(
        f"/v1/tenants/{U}/apps/{A}/runs/count", headers={"Authorization": f"Bearer {KEY_ALL}"}
    )
    assert everyone.status_code == 200


def test_tenants_never_share_cache_entries(keyed: TestClient[Any]) -> None:
    params = {"triggered_from": "app-run"}
    mine = keyed.get(
        f"{BASE}/runs/count", params=params, headers={"Authorization": f"Bearer {KEY_ALL}"}
    ).json()
    theirs = keyed.get(
        f"/v1/tenants/{U}/apps/{A}/runs/count", params=params, headers={"Authorization": f"Bearer {KEY_ALL}"}
    )
    assert theirs.headers["x-cache"] == "miss"  # same app id, other tenant: its own entry
    assert (mine["total"], theirs.json()["total"]) == (4, 1)


def test_cache_hit_after_miss(client: TestClient[Any]) -> None:
    first = client.get(f"{BASE}/runs/count")
    second = client.get(f"{BASE}/runs/count")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert first.json() == second.json()


def test_concurrent_identical_misses_run_one_backend_query(database_url: str) -> None:
    """Over real connections: all twelve overlap (each is a miss, none a hit) yet one query runs."""
    settings = make_settings(database_url)
    backend = CountingBackend(database_url, settings, delay=0.3)
    with serve(create_app(settings, backend)) as base_url:
        answers = asyncio.run(get_all(base_url, [(f"{BASE}/runs/count", {})] * 12))
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.text for answer in answers}) == 1
    assert [answer.headers["x-cache"] for answer in answers] == ["miss"] * 12
    assert len(backend.queries) == 1


def test_day_rollups_fetch_only_unsettled_days(database_url: str) -> None:
    """90 days warm: a refresh after the whole-answer entry expired asks the backend once, for
    the versions of the live days written since the last read (minus the slack)."""
    settings = make_settings(database_url, STATS_CACHE_TTL="0")
    backend = CountingBackend(database_url, settings)
    app = create_app(settings, backend)
    service = app.state.service
    # "Now" is 2025-03-03 12:00 Shanghai: 2025-03-01 ended 36 h ago (settled), 2025-03-02 12 h ago (live).
    now_s = 1_740_974_400
    service.wall_clock = lambda: float(now_s)
    params = {
        "start": "2024-12-03",
        "end": "2025-03-03",
        "timezone": "Asia/Shanghai",
        "triggered_from": "app-run",
    }
    live_from_us = 1_740_844_800_000_000  # 2025-03-02T00:00+08:00
    with TestClient(app=app) as client:
        cold = client.get(f"{BASE}/statistics/daily-runs", params=params)
        assert cold.headers["x-cache"] == "miss"
        # The settled days in one read (two statements at once, each over half of the users),
        # the live days' runs in another (kept).
        assert sorted((query["start_us"], query.get("end_us")) for query in backend.queries) == [
            (1_733_155_200_000_000, live_from_us),
            (1_733_155_200_000_000, live_from_us),
            (live_from_us, None),
        ]
        parts = [(q.get("users_from", ""), q.get("users_to", "")) for q in backend.queries if "end_us" in q]
        assert sorted(parts) == [("", "8"), ("8", "")]
        warm = client.get(f"{BASE}/statistics/daily-runs", params=params)
        assert (
            warm.json()
            == cold.json()
            == {"data": [{"date": "2025-03-01", "runs": 1}, {"date": "2025-03-02", "runs": 3}]}
        )
        assert warm.headers["x-cache"] == "partial"
        assert len(backend.queries) == 4
        refreshed = backend.queries[3]
        assert (refreshed["start_us"], refreshed["min_time"]) == (
            live_from_us,
            now_s - settings.time_slack,
        )


def test_stale_answer_when_the_backend_fails() -> None:
    from app.core.cache import AnswerCache
    from app.stores.backend import BackendUnavailable

    now = [1000.0]
    cache = AnswerCache(max_entries=10, stale_max=600, clock=lambda: now[0])

    async def scenario() -> list[Any]:
        async def good() -> str:
            return "fresh"

        async def broken() -> str:
            raise BackendUnavailable("down")

        results = [await cache.get_or_load("k", 30, good, tenant="t")]
        now[0] += 31  # expired, within stale_max
        results.append(await cache.get_or_load("k", 30, broken, tenant="t"))
        now[0] += 600  # beyond stale_max
        try:
            await cache.get_or_load("k", 30, broken, tenant="t")
        except BackendUnavailable:
            results.append("unavailable")
        return results

    assert asyncio.run(scenario()) == [("fresh", "miss"), ("fresh", "stale"), "unavailable"]


def test_cache_is_bounded() -> None:
    from app.core.cache import AnswerCache

    cache = AnswerCache(max_entries=3, stale_max=0)
    for n in range(10):
        cache.put(n, msgspec.UNSET, 60, tenant="t")
    assert len(cache) == 3


def test_metrics_count_requests_cache_results_and_backend_time(client: TestClient[Any]) -> None:
    client.get(f"{BASE}/runs/count")
    client.get(f"{BASE}/runs/count")
    exposition = client.get("/metrics")
    assert exposition.status_code == 200 and exposition.headers["content-type"].startswith("text/plain")
    text = exposition.text
    assert (
        'dify_stats_requests_total{route="/v1/tenants/{tenant_id}/apps/{app_id}/runs/count",status="200"} 2.0'
        in text
    )
    assert 'dify_stats_cache_results_total{result="hit"} 1.0' in text
    assert 'dify_stats_cache_results_total{result="miss"} 1.0' in text
    assert 'dify_stats_backend_query_seconds_count{plan="shortcut",source="logstore"} 1.0' in text
    assert "dify_stats_pool_requests_waiting" in text
    assert "dify_stats_kept_runs 0.0" in text  # no daily range asked yet


def test_request_log_line_has_route_cache_and_backend_time_but_no_values(
    client: TestClient[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from app.logging import configure_logging

    configure_logging("info")
    client.get(
        f"{BASE}/runs/count", params={"triggered_from": "webhook"}, headers={"Authorization": "Bearer s3cr3t"}
    )
    lines = [
        msgspec.json.decode(line) for line in capsys.readouterr().err.splitlines() if '"request"' in line
    ]
    assert lines, "no request log line"
    line = lines[-1]
    assert line["route"] == "/v1/tenants/{tenant_id}/apps/{app_id}/runs/count"
    assert (line["cache"], line["backend_queries"]) == ("miss", 1) and line["backend_ms"] > 0
    assert line["request_id"]
    assert "webhook" not in str(lines) and "s3cr3t" not in str(lines) and T not in str(lines)
