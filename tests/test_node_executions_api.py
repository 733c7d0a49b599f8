"""A run's node executions over HTTP: native and console paths, Dify's console shape, cut values
through the SLS stand-in, people named from Dify's database, the cap, caching, the two-source
boundary, and a LogStore without its node logstore."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from litestar.testing import TestClient

from app.config import load_settings
from app.demo import copy_rows
from app.http.json_depth import MAX_DEPTH
from app.main import create_app
from app.stores.backend import Backend
from app.stores.node_logstore import RECHECK_S
from tests import examples, node_examples
from tests.db import load_history, load_node_history
from tests.fake_dify import Account, serve_fake_dify
from tests.live import serve
from tests.processes import ROOT, cli_env, service

T, A, R1 = examples.T, examples.A, examples.R1
NATIVE = f"/v1/tenants/{T}/apps/{A}/runs"
CONSOLE = f"/console/api/apps/{A}/workflow-runs"
ADA = {"Authorization": "Bearer ada-token"}
ACCOUNTS = {
    "ada-token": Account(tenant_id=T, timezone="Asia/Shanghai", apps=frozenset({A})),
    "eve-token": Account(tenant_id=T, timezone="UTC", apps=frozenset(), forbidden_apps=frozenset({A})),
}
# Dify's `workflow_run_node_execution_fields` (api/fields/workflow_run_fields.py), in its order.
DIFY_NODE_FIELDS = [
    "id", "index", "predecessor_node_id", "node_id", "node_type", "title", "inputs", "process_data",
    "outputs", "status", "error", "elapsed_time", "execution_metadata", "extras", "created_at",
    "created_by_role", "created_by_account", "created_by_end_user", "finished_at", "inputs_truncated",
    "outputs_truncated", "process_data_truncated",
]  # fmt: skip
ALICE_END_USER = {"id": examples.ALICE, "type": "browser", "is_anonymous": True, "session_id": "s-alice"}


@pytest.fixture
def loaded(pg_conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    load_history(pg_conn, examples.history())
    load_node_history(pg_conn, node_examples.nodes())
    pg_conn.execute("TRUNCATE workflow_runs, workflow_node_executions, accounts, end_users")
    return pg_conn


def _client(**env: str) -> TestClient[Any]:
    settings = load_settings(env)
    logstore = Backend(settings.database_url, settings) if settings.database_url else None
    dify = settings.dify_database_url
    workflow_runs = Backend(dify, settings, dialect="postgres", name="workflow_runs") if dify else None
    return TestClient(app=create_app(settings, logstore, workflow_runs))


def test_native_answer_is_the_latest_version_of_each_execution_in_order(
    loaded: psycopg.Connection[Any], database_url: str
) -> None:
    with _client(STATS_DATABASE_URL=database_url) as client:
        answer = client.get(f"{NATIVE}/{R1}/node-executions")
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert [item["id"] for item in data] == [node_examples.N1, node_examples.N2, node_examples.N3]
    start, llm, end = data
    assert (start["status"], start["elapsed_time"], start["created_at"], start["finished_at"]) == (
        "succeeded", 0.5, 1740844800, 1740844800,
    )  # fmt: skip
    assert start["inputs"] is None and start["outputs"] is None and start["execution_metadata"] == {}
    assert llm["outputs"] == {"text": node_examples.LONG_TEXT} and llm["truncated_fields"] == []
    assert (llm["predecessor_node_id"], llm["error"], llm["execution_metadata"]) == (
        "start",
        None,
        {"total_tokens": 25},
    )
    assert (end["status"], end["outputs"], end["error"]) == ("succeeded", {"answer": "hi"}, None)
    assert end["elapsed_time"] == 3.0  # NULL: finished - created
    assert end["created_by"] == examples.ALICE and end["created_by_end_user"] is None  # no Dify database
    assert answer.json()["has_more"] is False and "x-has-more" not in answer.headers


def test_console_answer_has_difys_fields_in_difys_order(
    loaded: psycopg.Connection[Any], database_url: str
) -> None:
    with (
        serve_fake_dify(ACCOUNTS) as (dify_url, _),
        _client(STATS_DATABASE_URL=database_url, DIFY_CONSOLE_API_URL=dify_url) as client,
    ):
        answer = client.get(f"{CONSOLE}/{R1}/node-executions", headers=ADA)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert list(body) == ["data"]
        for item in body["data"]:
            assert list(item) == DIFY_NODE_FIELDS
        types = {
            "id": str, "index": int, "node_id": str, "node_type": str, "title": str, "status": str,
            "elapsed_time": float, "extras": dict, "created_at": int, "created_by_role": str,
            "inputs_truncated": bool, "outputs_truncated": bool, "process_data_truncated": bool,
        }  # fmt: skip
        for name, kind in types.items():
            assert all(isinstance(item[name], kind) for item in body["data"]), name
        assert client.get(f"{CONSOLE}/{R1}/node-executions").status_code == 401
        eve = client.get(f"{CONSOLE}/{R1}/node-executions", headers={"Authorization": "Bearer eve-token"})
        assert eve.status_code == 403
        elsewhere = (
            f"/console/api/apps/a9000000-0000-4000-8000-0000000000a9/workflow-runs/{R1}/node-executions"
        )
        assert client.get(elsewhere, headers=ADA).status_code == 404  # Dify: the app is not the caller's
        # Dify answers a run that is not this app's with an empty list, not a 404.
        other = client.get(f"{CONSOLE}/{examples.R6}/node-executions", headers=ADA)
        assert (other.status_code, other.json()) == (200, {"data": []})


def test_unknown_runs_and_other_tenants_runs_are_404(
    loaded: psycopg.Connection[Any], database_url: str
) -> None:
    with _client(STATS_DATABASE_URL=database_url) as client:
        unknown = client.get(f"{NATIVE}/f0000000-0000-4000-8000-000000000000/node-executions")
        assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
        assert client.get(f"{NATIVE}/{examples.R6}/node-executions").status_code == 404  # tenant U's run
        assert client.get(f"{NATIVE}/not-a-uuid/node-executions").status_code == 400


def _logged(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, *events: str
) -> list[list[str]]:
    """Per event, its log lines so far: structlog's lines reach stdout, or the log capture once
    another test has configured logging."""
    printed = capsys.readouterr().out.splitlines() + caplog.text.splitlines()
    return [[line for line in printed if event in line] for event in events]


def test_a_value_over_the_sls_field_length_is_flagged_through_the_stand_in(
    loaded: psycopg.Connection[Any],
    sls_standin: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with _client(STATS_DATABASE_URL=sls_standin.url, STATS_DIALECT="sls") as client:
        native = client.get(f"{NATIVE}/{R1}/node-executions").json()["data"]
        _, llm, _ = native
        assert llm["truncated_fields"] == ["outputs"] and llm["outputs_truncated"] is True
        assert isinstance(llm["outputs"], str) and len(llm["outputs"]) == 2048  # its text, as SLS cut it
        assert llm["inputs"] == {"query": "hello"} and llm["inputs_truncated"] is False
        assert [item["truncated_fields"] for item in (native[0], native[2])] == [[], []]
    [logged] = _logged(capsys, caplog, "node_fields_truncated")
    assert len(logged) == 1 and R1 in logged[0] and node_examples.N2 in logged[0] and "outputs" in logged[0]


# Documents nested too deeply to answer as JSON: far beyond the decoders' limit, an SLS-cut value
# that is all brackets (the decoders give up before they reach the cut), and one level beyond the
# service's own bound, which msgspec would still read; the deepest one answered as JSON beside them.
BEYOND_DECODERS = '{"a": ' + "[" * 1500 + "]" * 1500 + "}"
CUT_BRACKETS = "[" * 2048
BEYOND_BOUND = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
DEEPEST_ANSWERED = "[" * MAX_DEPTH + "]" * MAX_DEPTH


def test_documents_nested_too_deeply_are_answered_as_text_and_flagged(
    loaded: psycopg.Connection[Any],
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over a real socket, as a GET's answer: never the 400 about a request body, nor a 500."""
    from tests.test_query_cli import query

    run = max((row for row in examples.history() if row.id == R1), key=lambda row: row.log_version)
    deep_run = msgspec.structs.replace(
        run, time=run.time + 100, log_version=400, graph=CUT_BRACKETS, inputs=BEYOND_DECODERS,
        outputs=DEEPEST_ANSWERED,
    )  # fmt: skip
    load_history(loaded, [*examples.history(), deep_run])
    node = max(
        (row for row in node_examples.nodes() if row.id == node_examples.N2), key=lambda row: row.log_version
    )
    deep_node = msgspec.structs.replace(
        node, time=node.time + 50, log_version=400, inputs=DEEPEST_ANSWERED, process_data=BEYOND_BOUND,
        outputs=BEYOND_DECODERS, execution_metadata=CUT_BRACKETS,
    )  # fmt: skip
    load_node_history(loaded, [*node_examples.nodes(), deep_node])
    settings = load_settings({"STATS_DATABASE_URL": database_url})
    with serve(create_app(settings, Backend(database_url, settings))) as base_url:
        detail = httpx.get(f"{base_url}{NATIVE}/{R1}", timeout=30)
        nodes = httpx.get(f"{base_url}{NATIVE}/{R1}/node-executions", timeout=30)
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert body["truncated_fields"] == ["graph", "inputs"]
    assert (body["graph"], body["inputs"]) == (CUT_BRACKETS, BEYOND_DECODERS)
    assert body["outputs"] == json.loads(DEEPEST_ANSWERED)
    assert nodes.status_code == 200, nodes.text
    [llm] = [item for item in nodes.json()["data"] if item["id"] == node_examples.N2]
    assert llm["truncated_fields"] == ["process_data", "outputs", "execution_metadata"]
    assert (llm["process_data"], llm["outputs"]) == (BEYOND_BOUND, BEYOND_DECODERS)
    assert (llm["process_data_truncated"], llm["outputs_truncated"], llm["inputs_truncated"]) == (
        True,
        True,
        False,
    )
    assert llm["inputs"] == json.loads(DEEPEST_ANSWERED)
    [run_line], [node_line] = _logged(capsys, caplog, "run_fields_truncated", "node_fields_truncated")
    assert R1 in run_line and R1 in node_line and node_examples.N2 in node_line
    shown = query(database_url, "node-executions", "--tenant", T, "--app", A, "--run", R1, "--json")
    assert shown.returncode == 0 and "Traceback" not in shown.stderr
    assert "node_fields_truncated" in shown.stderr and node_examples.N2 in shown.stderr  # the CLI says so too
    assert json.loads(shown.stdout) == nodes.json()


def test_people_are_named_from_difys_database_in_one_statement(
    loaded: psycopg.Connection[Any], database_url: str
) -> None:
    loaded.execute(
        "INSERT INTO end_users (id, tenant_id, app_id, type, is_anonymous, session_id) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (examples.ALICE, T, A, "browser", True, "s-alice"),
    )
    loaded.execute(
        "INSERT INTO accounts (id, name, email) VALUES (%s, 'Bob', 'bob@example.com')", (examples.BOB,)
    )
    # r4 run by bob's account (the other example runs by end users)
    account_r4 = [
        msgspec.structs.replace(version, created_by_role="account") if version.id == examples.R4 else version
        for version in examples.history()
    ]
    load_history(loaded, account_r4)
    env = {
        "STATS_DATABASE_URL": database_url,
        "STATS_DIFY_DATABASE_URL": database_url,
        "STATS_LOGSTORE_SINCE": "2000-01-01T00:00:00+00:00",  # every example run is the LogStore's
    }
    with serve_fake_dify(ACCOUNTS) as (dify_url, _), _client(**env, DIFY_CONSOLE_API_URL=dify_url) as client:
        metrics = client.app.state.metrics

        def statements_on_difys_database() -> float:
            return float(metrics.registry.get_sample_value(
                "dify_stats_backend_query_seconds_count", {"source": "workflow_runs", "plan": "table"}
            ) or 0)  # fmt: skip

        nodes = client.get(f"{CONSOLE}/{R1}/node-executions", headers=ADA).json()["data"]
        assert statements_on_difys_database() == 1  # three nodes, one read of the people
        assert all(item["created_by_end_user"] == ALICE_END_USER for item in nodes)
        assert all(item["created_by_account"] is None for item in nodes)
        detail = client.get(f"{CONSOLE}/{R1}", headers=ADA).json()
        assert (detail["created_by_end_user"], detail["created_by_account"]) == (ALICE_END_USER, None)
        page = client.get(CONSOLE, params={"triggered_from": "app-run", "limit": 3}, headers=ADA).json()
        assert statements_on_difys_database() == 3  # one more per answer
        accounts = {run["id"]: run["created_by_account"] for run in page["data"]}
        bob = {"id": examples.BOB, "name": "Bob", "email": "bob@example.com"}
        # Dify's run list names accounts only: r3 is bob's too, but as an end user.
        assert accounts == {examples.R4: bob, examples.R3: None, examples.R2: None}
        assert (
            client.get(CONSOLE, params={"triggered_from": "app-run", "limit": 3}, headers=ADA).headers[
                "x-cache"
            ]
            == "hit"
        )
        assert statements_on_difys_database() == 3
        native = client.get(f"{NATIVE}/{R1}").json()
        assert "created_by_account" not in native  # the native shapes are unchanged


def test_the_cap_answers_the_first_executions_and_says_there_are_more(
    loaded: psycopg.Connection[Any], database_url: str
) -> None:
    with _client(STATS_DATABASE_URL=database_url, STATS_NODE_EXECUTIONS_MAX="2") as client:
        answer = client.get(f"{NATIVE}/{R1}/node-executions")
    assert [item["id"] for item in answer.json()["data"]] == [node_examples.N1, node_examples.N2]
    assert answer.json()["has_more"] is True and answer.headers["x-has-more"] == "true"


def test_answers_are_cached_and_a_finished_runs_are_settled(
    loaded: psycopg.Connection[Any], database_url: str
) -> None:
    with _client(STATS_DATABASE_URL=database_url, STATS_CACHE_TTL="0", STATS_SETTLED_TTL="3600") as client:
        first = client.get(f"{NATIVE}/{R1}/node-executions")
        again = client.get(f"{NATIVE}/{R1}/node-executions")
        unfinished = examples.R3
        client.get(f"{NATIVE}/{unfinished}/node-executions")
        unfinished_again = client.get(f"{NATIVE}/{unfinished}/node-executions")
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert unfinished_again.headers["x-cache"] == "miss"  # a live run: STATS_CACHE_TTL (0 here)


@pytest.fixture
def two_sources(loaded: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """r1 also in Dify's tables (created before the boundary), with its nodes' current rows."""
    loaded.execute(
        "INSERT INTO workflow_runs (id, tenant_id, app_id, workflow_id, type, triggered_from, version, "
        "status, created_by_role, created_by, created_at, finished_at) VALUES (%s, %s, %s, %s, 'workflow', "
        "'app-run', 'draft', 'succeeded', 'end_user', %s, %s, %s)",
        (
            R1,
            T,
            A,
            A,
            examples.ALICE,
            datetime(2025, 3, 1, 15, 59, 59, 999_999),
            datetime(2025, 3, 1, 16, 0, 5),
        ),
    )
    columns = (
        "id", "tenant_id", "app_id", "workflow_id", "triggered_from", "workflow_run_id", "index", "node_id",
        "node_type", "title", "inputs", "process_data", "outputs", "status", "elapsed_time", "created_at",
        "created_by_role", "created_by", "finished_at",
    )  # fmt: skip
    row = (
        node_examples.N2, T, A, A, "workflow-run", R1, 2, "llm", "llm", "LLM", None, None,
        '{"from": "table"}', "succeeded", 1.5, datetime(2025, 3, 1, 16, 0, 1), "end_user", examples.ALICE,
        datetime(2025, 3, 1, 16, 0, 2, 500_000),
    )  # fmt: skip
    copy_rows(loaded, [row], "workflow_node_executions", columns)
    yield loaded


def test_a_run_before_the_boundary_has_the_node_executions_of_difys_table(
    two_sources: psycopg.Connection[Any], database_url: str
) -> None:
    env = {"STATS_DATABASE_URL": database_url, "STATS_DIFY_DATABASE_URL": database_url}
    with _client(**env, STATS_LOGSTORE_SINCE="2025-03-01T16:00:00+00:00") as client:
        before = client.get(f"{NATIVE}/{R1}/node-executions").json()["data"]
    assert [(item["id"], item["outputs"], item["created_at"], item["finished_at"]) for item in before] == [
        (node_examples.N2, {"from": "table"}, 1740844801, 1740844802)
    ]
    with _client(**env, STATS_LOGSTORE_SINCE="2025-03-01T15:00:00+00:00") as client:
        after = client.get(f"{NATIVE}/{R1}/node-executions").json()["data"]
    assert [item["id"] for item in after] == [node_examples.N1, node_examples.N2, node_examples.N3]


@pytest.fixture
def no_node_logstore(pg_server: Any) -> str:
    """A LogStore with the example runs and no workflow_node_execution (an older Dify writer)."""
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS dify_stats_no_nodes")
        admin.execute("CREATE DATABASE dify_stats_no_nodes")
    url: str = pg_server.get_uri("dify_stats_no_nodes")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((ROOT / "queries" / "schema.sql").read_text())
        conn.execute("DROP TABLE workflow_node_execution")
        load_history(conn, examples.history())
    return url


def test_serve_without_the_node_logstore_says_so_and_serves_everything_else(
    no_node_logstore: str, tmp_path: Path
) -> None:
    with service(cli_env(tmp_path, STATS_DATABASE_URL=no_node_logstore)) as running:
        started = json.loads(running.wait_for_line('"service_started"', 60))
        assert started["node_logstore"] == "absent (logstore workflow_node_execution not found)"
        assert httpx.get(f"{running.base}{NATIVE}/{R1}", timeout=10).status_code == 200
        nodes = httpx.get(f"{running.base}{NATIVE}/{R1}/node-executions", timeout=10)
        assert (nodes.status_code, nodes.json()["code"]) == (503, "node_logstore_absent")
        assert "workflow_node_execution" in nodes.json()["message"]
        ready = httpx.get(f"{running.base}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["node_logstore"].startswith("absent")
        assert running.stop(signal.SIGTERM) == -signal.SIGTERM


def test_a_node_logstore_found_missing_and_then_created_is_served(no_node_logstore: str) -> None:
    with _client(STATS_DATABASE_URL=no_node_logstore) as client:
        assert "node_logstore" not in client.get("/readyz").json()  # not probed: believed there
        assert client.get(f"{NATIVE}/{R1}/node-executions").status_code == 503  # learnt missing
        assert client.get("/readyz").json()["node_logstore"].startswith("absent")
        with psycopg.connect(no_node_logstore, autocommit=True) as conn:
            conn.execute((ROOT / "queries" / "schema.sql").read_text())  # Dify starts writing node logs
        node_logstore = client.app.state.node_logstore
        node_logstore._checked_at -= RECHECK_S  # a minute later
        assert "node_logstore" not in client.get("/readyz").json()
        answer = client.get(f"{NATIVE}/{R1}/node-executions")
        assert answer.status_code == 200 and answer.json()["data"] == []


def test_the_query_cli_answers_what_the_api_answers(
    loaded: psycopg.Connection[Any], database_url: str
) -> None:
    from tests.test_query_cli import query

    with _client(STATS_DATABASE_URL=database_url) as client:
        api = client.get(f"{NATIVE}/{R1}/node-executions").json()
    ids = ("--tenant", T, "--app", A, "--run", R1)
    done = query(database_url, "node-executions", *ids, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == api
    shown = query(database_url, "node-executions", *ids)
    assert shown.returncode == 0 and shown.stdout.splitlines()[0].split() == [
        "index", "node_type", "title", "status", "elapsed_time", "created_at", "id",
    ]  # fmt: skip
    assert [line.split()[0] for line in shown.stdout.splitlines()[1:]] == ["1", "2", "3"]
    missing = query(database_url, "node-executions", "--tenant", T, "--app", A)
    assert missing.returncode == 2 and "run:" in missing.stderr
    unknown = query(database_url, "node-executions", "--tenant", T, "--app", A, "--run", examples.R6)
    assert unknown.returncode == 2 and "not a run" in unknown.stderr


def test_check_sls_runs_the_node_statements_against_the_stand_in(
    sls_standin: Any, pg_conn: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """`make check-sls` covers the node statements: the probe, the run's lookup, both plans (which
    must agree) and keyset pages of two that neither skip nor repeat a node execution."""
    from app.demo import generate_rows
    from app.demo_nodes import load_demo_nodes
    from app.live_check import check_sls

    pg_conn.execute("TRUNCATE workflow_execution, workflow_runs, workflow_node_execution")
    copy_rows(pg_conn, generate_rows(400, days=5))
    load_demo_nodes(pg_conn, None)
    settings = load_settings({"STATS_DATABASE_URL": sls_standin.url, "STATS_DIALECT": "sls"})
    assert check_sls(settings) == 0
    printed = capsys.readouterr().out
    assert "check-sls: OK" in printed
    assert "node_page (shortcut)" in printed and "node_page (windowed)" in printed and "run_span" in printed
    paging = next(line for line in printed.splitlines() if "node paging" in line)
    assert paging.endswith("same") and " 0 node executions" not in paging


def test_replicas_sharing_redis_share_node_answers(
    loaded: psycopg.Connection[Any], database_url: str, redis_url: str
) -> None:
    """What one replica read is a hit on another, native and console shapes alike (each a struct
    encoded in Redis and decoded with its type)."""
    env = {"STATS_DATABASE_URL": database_url, "STATS_REDIS_URL": redis_url}
    with (
        serve_fake_dify(ACCOUNTS) as (dify_url, _),
        _client(**env, DIFY_CONSOLE_API_URL=dify_url) as one,
        _client(**env, DIFY_CONSOLE_API_URL=dify_url) as two,
    ):
        for path, headers in (
            (f"{NATIVE}/{R1}/node-executions", {}),
            (f"{CONSOLE}/{R1}/node-executions", ADA),
        ):
            first, second = one.get(path, headers=headers), two.get(path, headers=headers)
            assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit"), path
            assert first.json() == second.json() and first.json()["data"], path
        unknown = f"{NATIVE}/f0000000-0000-4000-8000-000000000000/node-executions"
        assert one.get(unknown).status_code == two.get(unknown).status_code == 404
