"""Settled days through the real application and the SLS stand-in (what a statement reads is
counted there): read once, then validated; exact when an old run finishes today; shared by
replicas through a real Redis, so a restarted replica reads nothing settled again, and one
validation serves the fleet."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from litestar.testing import TestClient

from app.config import load_settings
from app.core.measures import DAILY_MEASURES, MEASURES_BY_NAME
from app.demo import copy_rows, demo_apps, generate_rows
from app.main import create_app
from app.stores.backend import Backend
from tests.db import load_history
from tests.live import serve

APP = demo_apps()[0]
BASE = f"/v1/tenants/{APP.tenant_id}/apps/{APP.app_id}/statistics"
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
RANGE = {  # 90 long-settled whole days
    "start": (TODAY - timedelta(days=95)).date().isoformat(),
    "end": (TODAY - timedelta(days=5)).date().isoformat(),
    "timezone": "UTC",
}
OLD_DAY = TODAY - timedelta(days=30)
TTL_S = 1.0


def _settings(url: str, **env: str) -> Any:
    return load_settings(
        {
            "STATS_DATABASE_URL": url,
            "STATS_DIALECT": "sls",
            "STATS_SETTLED_TTL": str(TTL_S),
            "STATS_CACHE_TTL": "0",
            **env,
        }
    )


def _rows_read(standin: Any) -> int:
    """Rows the statements sent since the last reset got back (connection checks aside)."""
    return sum(seen.rows for seen in standin.counters.statements() if " AS ok" not in seen.sql)


def _sent(standin: Any, marker: str) -> int:
    return sum(1 for seen in standin.counters.statements() if marker in seen.sql)


def _paused_run(run_id: str, time_s: int) -> list[tuple[Any, ...]]:
    """A run of the app created on OLD_DAY, running then paused (its versions as COPY rows)."""
    created = (OLD_DAY + timedelta(hours=10)).replace(tzinfo=None).isoformat()
    user = APP.users[0]
    base = (
        APP.tenant_id, APP.app_id, APP.workflow_id, "app-run", APP.type, "draft", "", "", "",
    )  # fmt: skip
    rows = []
    for n, (status, tokens, finished, at) in enumerate(
        [("running", 0, "", time_s), ("paused", 0, "", time_s + 60)], start=1
    ):
        rows.append(_row(run_id, n, at, base, status, tokens, finished, user, created))
    return rows


def _row(
    run_id: str,
    log_version: int,
    time_s: int,
    base: tuple[Any, ...],
    status: str,
    tokens: int,
    finished: str,
    user: tuple[str, str],
    created: str,
) -> tuple[Any, ...]:
    tenant_id, app_id, workflow_id, trigger, kind, version, graph, inputs, outputs = base
    return (
        time_s, run_id, log_version * 10**9, tenant_id, app_id, workflow_id, trigger, kind, version,
        graph, inputs, outputs, status, "", tokens, 1, 0, None, user[0], user[1], created, created, finished,
    )  # fmt: skip


@pytest.fixture
def settled_history(pg_conn: psycopg.Connection[Any]) -> Iterator[str]:
    """100 days of the demo's runs ending 3 days ago, and one run paused on OLD_DAY (its id)."""
    load_history(pg_conn, [])
    copy_rows(pg_conn, generate_rows(3_000, days=100, seed=11, now=TODAY - timedelta(days=3)))
    run_id = str(uuid.uuid4())
    copy_rows(pg_conn, _paused_run(run_id, int((OLD_DAY + timedelta(hours=10)).timestamp())))
    yield run_id


def _finish_now(pg_conn: psycopg.Connection[Any], run_id: str) -> None:
    """The paused run resumes and succeeds today, a month after it was created."""
    created = (OLD_DAY + timedelta(hours=10)).replace(tzinfo=None).isoformat()
    now_s = int(time.time())
    finished = datetime.now(UTC).replace(tzinfo=None).isoformat()
    base = (APP.tenant_id, APP.app_id, APP.workflow_id, "app-run", APP.type, "draft", "", "", "")
    copy_rows(
        pg_conn,
        [
            _row(run_id, 3, now_s - 5, base, "running", 0, "", APP.users[0], created),
            _row(run_id, 4, now_s - 1, base, "succeeded", 777, finished, APP.users[0], created),
        ],
    )


def _day(answer: dict[str, Any], day: datetime) -> dict[str, Any]:
    return next(item for item in answer["data"] if item["date"] == day.date().isoformat())


def test_a_settled_range_is_validated_not_read_again_and_stays_exact(
    sls_standin: Any, pg_conn: psycopg.Connection[Any], settled_history: str
) -> None:
    settings = _settings(sls_standin.url)
    with TestClient(app=create_app(settings, Backend(sls_standin.url, settings))) as client:
        for measure in DAILY_MEASURES:
            path = f"{BASE}{measure.native_path}"
            sls_standin.counters.reset()
            cold = client.get(path, params=RANGE)
            cold_rows = _rows_read(sls_standin)
            assert cold.status_code == 200 and cold_rows > 0
            time.sleep(TTL_S + 0.1)  # past STATS_SETTLED_TTL: the answer and the days are due
            sls_standin.counters.reset()
            again = client.get(path, params=RANGE)
            assert again.json() == cold.json(), measure.name
            assert _rows_read(sls_standin) <= 0.1 * cold_rows, measure.name
            assert _sent(sls_standin, "AS changed") == 1, measure.name  # one validation statement
        before = {name: client.get(f"{BASE}{MEASURES_BY_NAME[name].native_path}", params=RANGE).json()
                  for name in ("daily_token_costs", "daily_status")}  # fmt: skip
        _finish_now(pg_conn, settled_history)
        time.sleep(TTL_S + 0.1)
        sls_standin.counters.reset()
        tokens = client.get(f"{BASE}/token-costs", params=RANGE).json()
        status = client.get(f"{BASE}/daily-status", params=RANGE).json()
        assert (
            _day(tokens, OLD_DAY)["token_count"]
            == _day(before["daily_token_costs"], OLD_DAY)["token_count"] + 777
        )
        old, new = _day(before["daily_status"], OLD_DAY), _day(status, OLD_DAY)
        assert (new["paused"], new["succeeded"]) == (old["paused"] - 1, old["succeeded"] + 1)
        # Only the day that changed was read again (one statement for it), besides validations.
        assert _sent(sls_standin, "AS changed") >= 1
        reread = [seen for seen in sls_standin.counters.statements() if "AS changed" not in seen.sql]
        assert all(seen.rows <= 2 for seen in reread if " AS ok" not in seen.sql)


def test_a_restarted_replica_reads_nothing_settled_again_and_the_fleet_validates_once(
    sls_standin: Any, settled_history: str, redis_server: Any
) -> None:
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    prefix = f"settled-{uuid.uuid4().hex}:"
    settings = _settings(sls_standin.url, STATS_REDIS_URL=str(redis_server.url), STATS_REDIS_PREFIX=prefix)
    path = f"{BASE}/daily-runs"
    with TestClient(app=create_app(settings, Backend(sls_standin.url, settings))) as first:
        cold = first.get(path, params=RANGE).json()
    sls_standin.counters.reset()
    # A replica started afresh (nothing in its memory): the fleet's settled days, no statement.
    with TestClient(app=create_app(settings, Backend(sls_standin.url, settings))) as restarted:
        assert restarted.get(path, params=RANGE).json() == cold
    assert _rows_read(sls_standin) == 0 and _sent(sls_standin, "GROUP BY") == 0
    # Two replicas asked at once once the days are due: one validation statement for both.
    apps = [create_app(settings, Backend(sls_standin.url, settings)) for _ in range(2)]
    with serve(apps[0]) as one, serve(apps[1]) as two:
        time.sleep(TTL_S + 0.1)
        sls_standin.counters.reset()

        async def both() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                return list(
                    await asyncio.gather(*(client.get(f"{base}{path}", params=RANGE) for base in (one, two)))
                )

        answers = asyncio.run(both())
    assert [answer.json() for answer in answers] == [cold, cold]
    assert _sent(sls_standin, "AS changed") == 1
