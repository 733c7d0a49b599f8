"""A migrating deployment end to end: the demo history split by `app/demo.split_rows` (what
`python -m app demo-data --split-at` loads) and served from both sources, or from Dify's table
alone, gives the console, Grafana and curl exactly the answers the same history gives from the
LogStore alone.

The LogStore-alone answers are themselves checked against the reference elsewhere
(test_query_properties, test_api, test_grafana, test_console); here every route is compared
answer by answer, with the boundary in the middle of a local day in each zone asked."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from litestar.testing import TestClient

from app.config import load_settings
from app.core.measures import DAILY_MEASURES
from app.demo import copy_rows, demo_apps, generate_rows, split_rows
from app.embedded import load_demo
from app.http.grafana import SERIES as SERIES_BY_METRIC
from app.main import create_app
from app.stores.backend import Backend
from tests.fake_dify import Account, serve_fake_dify
from tests.live import free_port, wait_until_answering

NOW = datetime(2025, 11, 6, 9, 30, tzinfo=UTC)
SINCE = datetime(2025, 11, 2, 6, 45, 30, 500_000, tzinfo=UTC)  # New York's fall-back day, mid-day
ZONES = ("UTC", "Asia/Kolkata", "America/New_York")
APPS = demo_apps()[:2]
KEY = "two-sources-key-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}
ACCOUNTS = {
    "kolkata-token": Account(
        tenant_id=APPS[0].tenant_id, timezone="Asia/Kolkata", apps=frozenset({APPS[0].app_id})
    ),
    # The demo's second app is a chatflow: its runs are of type `chat`, each with a message.
    "chatflow-token": Account(
        tenant_id=APPS[1].tenant_id, timezone="UTC", apps=frozenset({APPS[1].app_id}),
        modes={APPS[1].app_id: "advanced-chat"},
    ),
}  # fmt: skip
# What only Dify's database names: who ran a run, and a chatflow run's message.
FROM_DIFYS_DATABASE = ("created_by_account", "created_by_end_user", "conversation_id", "message_id")
STATISTICS = tuple(measure.native_path.lstrip("/") for measure in DAILY_MEASURES)
CONSOLE_STATISTICS = ("daily-conversations", "daily-terminals", "token-costs", "average-app-interactions")
SERIES = (*SERIES_BY_METRIC, "runs_by_status")


def _rows() -> list[tuple[Any, ...]]:
    return list(generate_rows(1500, days=10, now=NOW))


def _client(dify_url: str, **env: str) -> TestClient[Any]:
    settings = load_settings({"STATS_API_KEYS": f"{KEY}=*", "DIFY_CONSOLE_API_URL": dify_url, **env})
    logstore = Backend(settings.database_url, settings) if settings.database_url else None
    dify = settings.dify_database_url
    workflow_runs = Backend(dify, settings, dialect="postgres", name="workflow_runs") if dify else None
    return TestClient(app=create_app(settings, logstore, workflow_runs))


def _all_pages(
    client: TestClient[Any], base: str, params: dict[str, Any], path: str = "/runs", headers: Any = HEADERS
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    while True:
        page = client.get(f"{base}{path}", params=params, headers=headers)
        assert page.status_code == 200, page.text
        runs += page.json()["data"]
        if not page.json()["has_more"]:
            return runs
        params = {**params, "last_id": runs[-1]["id"]}


def collect(client: TestClient[Any]) -> dict[str, Any]:
    """Every route's answer for the demo apps, keyed by what was asked."""
    answers: dict[str, Any] = {}
    window = {"start": (NOW - timedelta(days=11)).isoformat(), "end": NOW.isoformat()}
    for app in APPS:
        base = f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}"
        for zone in ZONES:
            for trigger in ("app-run", "debugging"):
                for path in STATISTICS:
                    params = {**window, "timezone": zone, "triggered_from": trigger}
                    answer = client.get(f"{base}/statistics/{path}", params=params, headers=HEADERS)
                    assert answer.status_code == 200, answer.text
                    answers[f"{app.app_id} {zone} {trigger} {path}"] = answer.json()["data"]
        for trigger in ("app-run", "debugging"):
            answers[f"{app.app_id} {trigger} count"] = client.get(
                f"{base}/runs/count", params={"triggered_from": trigger}, headers=HEADERS
            ).json()
            for status in (None, "succeeded", "running"):
                params = {"triggered_from": trigger, "limit": 7, **({"status": status} if status else {})}
                runs = _all_pages(client, base, params)
                answers[f"{app.app_id} {trigger} {status} runs"] = runs
            for run in runs[::5]:
                answers[f"detail {run['id']}"] = client.get(
                    f"{base}/runs/{run['id']}", headers=HEADERS
                ).json()
        targets = [
            {"refId": name, "target": name, "payload": {"app_id": app.app_id, "timezone": "Asia/Kolkata"}}
            for name in SERIES
        ]
        body = {"range": {"from": window["start"], "to": window["end"]}, "targets": targets}
        answers[f"{app.app_id} grafana"] = client.post("/grafana/query", json=body, headers=HEADERS).json()
    kolkata = {"Authorization": "Bearer kolkata-token"}
    console_window = {"start": "2025-10-27 00:00", "end": "2025-11-06 15:00"}
    for path in CONSOLE_STATISTICS:
        answer = client.get(
            f"/console/api/apps/{APPS[0].app_id}/workflow/statistics/{path}",
            params=console_window,
            headers=kolkata,
        )
        assert answer.status_code == 200, answer.text
        answers[f"console {path}"] = answer.json()
    console = f"/console/api/apps/{APPS[0].app_id}/workflow-runs"
    console_runs = client.get(console, params={"limit": 100}, headers=kolkata)
    answers["console runs"] = console_runs.json()
    for run in answers[f"{APPS[0].app_id} app-run None runs"][::7]:
        answers[f"console detail {run['id']}"] = client.get(f"{console}/{run['id']}", headers=kolkata).json()
    chatflow = {"Authorization": "Bearer chatflow-token"}
    chat_base = f"/console/api/apps/{APPS[1].app_id}"
    for trigger in ("app-run", "debugging"):
        for status in (None, "succeeded"):
            params = {"triggered_from": trigger, "limit": 9, **({"status": status} if status else {})}
            answers[f"console chat runs {trigger} {status}"] = _all_pages(
                client, chat_base, params, "/advanced-chat/workflow-runs", chatflow
            )
            counted = client.get(
                f"{chat_base}/advanced-chat/workflow-runs/count", params=params, headers=chatflow
            )
            assert counted.status_code == 200, counted.text
            answers[f"console chat count {trigger} {status}"] = counted.json()
    return answers


def _runs_of(answer: Any) -> list[dict[str, Any]]:
    """The runs an answer holds: a page's, a list of pages', or a detail alone."""
    if isinstance(answer, dict) and isinstance(answer.get("data"), list):
        return list(answer["data"])
    if isinstance(answer, list):
        return [run for run in answer if isinstance(run, dict) and "created_by_role" in run]
    return [answer] if isinstance(answer, dict) and "created_by_role" in answer else []


def _named_by_dify(got: Any, alone: Any, where: str) -> None:
    """Dify's database names who ran each run (an account or an end user, whichever ran it) and
    each chatflow run's message; the LogStore alone names nobody. Checked, then set aside."""
    for run, bare in zip(_runs_of(got), _runs_of(alone), strict=True):
        for field in (field for field in FROM_DIFYS_DATABASE if field in run):
            named, unnamed = run.pop(field), bare.pop(field, None)
            assert unnamed is None, (where, field)
            if field == "created_by_account":
                assert (named is not None) == (run["created_by_role"] == "account"), (where, field)
            elif field == "created_by_end_user":
                assert (named is not None) == (run["created_by_role"] == "end_user"), (where, field)
            else:
                assert named is not None, (where, field)  # every chatflow run of the demo has one


@pytest.fixture
def dify_url() -> Iterator[str]:
    with serve_fake_dify(ACCOUNTS) as (url, _calls):
        yield url


def test_split_history_and_dify_table_answer_as_the_logstore_alone(
    database_url: str, pg_conn: psycopg.Connection[Any], dify_url: str
) -> None:
    pg_conn.execute("TRUNCATE workflow_execution, workflow_runs")
    copy_rows(pg_conn, _rows())
    with _client(dify_url, STATS_DATABASE_URL=database_url) as alone:
        expected = collect(alone)
    assert all(expected[f"{app.app_id} {zone} app-run daily-runs"] for app in APPS for zone in ZONES)
    assert all(expected[f"{app.app_id} app-run None runs"] for app in APPS)

    pg_conn.execute("TRUNCATE workflow_execution, workflow_runs")
    load_demo(pg_conn, _rows(), SINCE)  # workflow_runs: every run; the LogStore: from 7 days before
    configurations = {
        "two sources": {
            "STATS_DATABASE_URL": database_url,
            "STATS_DIFY_DATABASE_URL": database_url,
            "STATS_LOGSTORE_SINCE": SINCE.isoformat(),
        },
        "workflow_runs alone": {"STATS_DIFY_DATABASE_URL": database_url},
    }
    for name, env in configurations.items():
        with _client(dify_url, **env) as client:
            got = collect(client)
        assert got.keys() == expected.keys(), name
        assert any(run["created_by_role"] == "account" for run in got["console runs"]["data"]), name
        details = [got[key] for key in got if key.startswith("console detail")]
        assert {detail["created_by_role"] for detail in details} == {"account", "end_user"}, name
        chat_runs = got["console chat runs app-run None"]
        assert chat_runs and len({run["message_id"] for run in chat_runs}) == len(chat_runs), name
        for key in expected:
            if key.startswith("console"):
                _named_by_dify(got[key], expected[key], key)
            assert got[key] == expected[key], (name, key)


def test_the_split_is_a_real_migration(pg_conn: psycopg.Connection[Any]) -> None:
    """The comparison above means something: both sides hold runs of the boundary day, the
    LogStore holds dual-written copies of older runs and Dify's table newer ones."""
    logstore, workflow_runs = split_rows(_rows(), SINCE)
    since = SINCE.replace(tzinfo=None)
    older_in_logstore = {row[1] for row in logstore if datetime.fromisoformat(row[21]) < since}
    newer_in_dify = [row for row in workflow_runs if row[17] >= since]
    same_day_before = [row for row in workflow_runs if since - timedelta(hours=6) <= row[17] < since]
    same_day_after = [
        row for row in logstore if since <= datetime.fromisoformat(row[21]) < since + timedelta(hours=6)
    ]
    assert older_in_logstore and newer_in_dify and same_day_before and same_day_after


def test_the_embedded_demo_serves_a_split_history(tmp_path: Path) -> None:
    """`python -m app demo-data --split-at` then `serve` with STATS_LOGSTORE_SINCE, as the README
    says: counts include the runs only Dify's table holds (every run is in it in the demo)."""
    since = (datetime.now(UTC) - timedelta(days=20)).replace(microsecond=0).isoformat()
    env = {"PATH": "/usr/bin:/bin", "STATS_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    loaded = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "app", "demo-data", "--runs", "400", "--days", "60", "--split-at", since],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert f"STATS_LOGSTORE_SINCE={since} make run" in loaded.stderr
    port = free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        env={**env, "STATS_LOGSTORE_SINCE": since}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{base}/readyz", 60, server)
        app = demo_apps()[0]
        route = f"{base}/v1/tenants/{app.tenant_id}/apps/{app.app_id}/runs/count"
        served = httpx.get(route, params={"triggered_from": "app-run"}, timeout=10).json()
        # The running server's address, without taking a pgserver handle (which would keep the
        # server running after the service stops).
        from pgserver.utils import PostmasterInfo

        postmaster = PostmasterInfo.read_from_pgdata(tmp_path / "data" / "pg")
        assert postmaster is not None
        with psycopg.connect(postmaster.get_uri()) as conn:
            in_dify = conn.execute(
                "SELECT count(*) FROM workflow_runs WHERE tenant_id = %s AND app_id = %s "
                "AND triggered_from = 'app-run'",
                (app.tenant_id, app.app_id),
            ).fetchone()
            in_logstore = conn.execute(
                "SELECT count(DISTINCT id) FROM workflow_execution WHERE tenant_id = %s AND app_id = %s "
                "AND triggered_from = 'app-run'",
                (app.tenant_id, app.app_id),
            ).fetchone()
            # Every chatflow run has its chat message, for the advanced-chat run list.
            messages = conn.execute(
                "SELECT count(*), count(DISTINCT m.workflow_run_id) FROM messages m "
                "JOIN workflow_runs r ON r.id = m.workflow_run_id AND r.app_id = m.app_id AND r.type = 'chat'"
            ).fetchone()
            chat_runs = conn.execute("SELECT count(*) FROM workflow_runs WHERE type = 'chat'").fetchone()
        assert in_dify is not None and in_logstore is not None
        assert served["total"] == in_dify[0] > in_logstore[0] > 0
        assert messages is not None and chat_runs is not None
        assert messages[0] == messages[1] == chat_runs[0] > 0
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_dify_database_down_fails_only_what_needs_it(
    database_url: str, pg_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Ranges the LogStore owns are still answered; a range reaching before the instant, a
    run list reaching into Dify's table and /readyz answer 503 naming nothing secret."""
    pg_conn.execute("TRUNCATE workflow_execution, workflow_runs")
    load_demo(pg_conn, _rows(), SINCE)
    settings = load_settings(
        {
            "STATS_DATABASE_URL": database_url,
            "STATS_DIFY_DATABASE_URL": "postgresql://nobody:secret@dify-db/dify",
            "STATS_LOGSTORE_SINCE": SINCE.isoformat(),
            "STATS_QUERY_TIMEOUT": "0.5",
        }
    )
    dead = Backend(
        f"postgresql://nobody:secret@/dify?host={tmp_path}&connect_timeout=1",
        settings, dialect="postgres", name="workflow_runs",
    )  # fmt: skip
    app = APPS[0]
    base = f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}"
    with TestClient(app=create_app(settings, Backend(database_url, settings), dead)) as client:
        after = {"start": (SINCE + timedelta(days=1)).isoformat(), "end": NOW.isoformat()}
        answer = client.get(f"{base}/statistics/daily-runs", params=after)
        assert answer.status_code == 200 and answer.json()["data"], answer.text
        spanning = {"start": (SINCE - timedelta(days=2)).isoformat(), "end": NOW.isoformat()}
        down = client.get(f"{base}/statistics/daily-terminals", params=spanning)
        assert down.status_code == 503 and down.json()["code"] == "backend_unavailable"
        assert (
            client.get(f"{base}/runs", params={"triggered_from": "debugging", "limit": 100}).status_code
            == 503
        )
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "workflow_runs" in ready.json()["reason"]
        assert "secret" not in ready.text + down.text
