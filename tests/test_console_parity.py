"""The console drop-in answers as Dify's newest console does: each route's field set, the same
refusals as Dify for a member Dify refuses (a permission, an app of another mode), and Dify's
answers about a run of another app.

Dify as read in langgenius/dify: response fields in api/fields/workflow_run_fields.py at
03cbdbe355606eb186ebffb518f5db58216f3df9 and the statistics' in
api/controllers/console/app/workflow_statistic.py; routes and their checks in
api/controllers/console/app/workflow_run.py at 0248bb0b857a60d3fdf53efb1892ff68bc2e863e.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from app.config import load_settings
from app.main import create_app
from app.stores.backend import Backend
from tests import examples, node_examples
from tests.db import load_history, load_node_history
from tests.fake_dify import FORBIDDEN, MANAGE, MONITOR, Account, serve_fake_dify

A = examples.A
BASE = f"/console/api/apps/{A}"
STATISTICS = {  # path -> the point's field besides `date`
    "daily-conversations": "runs",
    "daily-terminals": "terminal_count",
    "token-costs": "token_count",
    "average-app-interactions": "interactions",
}
RUN_ROUTES = (
    "/workflow-runs",
    "/workflow-runs/count",
    f"/workflow-runs/{examples.R1}",
    f"/workflow-runs/{examples.R1}/node-executions",
    "/advanced-chat/workflow-runs",
    "/advanced-chat/workflow-runs/count",
)


def _account(mode: str = "workflow", lacking: frozenset[str] = frozenset()) -> Account:
    return Account(
        tenant_id=examples.T, timezone="UTC", apps=frozenset({A}), modes={A: mode}, lacking=lacking
    )


ACCOUNTS = {
    "workflow": _account("workflow"),
    "chatflow": _account("advanced-chat"),
    "chat": _account("chat"),  # a chatbot app: Dify serves it no workflow run route
    "no-monitor": _account("advanced-chat", frozenset({MONITOR})),
    "no-manage": _account("advanced-chat", frozenset({MANAGE})),
}

# Dify's fields per answer; then what dify-stats adds (who ran it by id, the run's scope and
# documents as the native detail has them, the cut values), which Dify's console ignores.
SUMMARY = {
    "id", "version", "status", "elapsed_time", "handoff_duration", "total_tokens", "total_steps",
    "created_by_account", "created_at", "finished_at", "exceptions_count", "retry_index",
}  # fmt: skip
SUMMARY_EXTRAS = {"created_by_role", "created_by"}
CHAT_SUMMARY = SUMMARY | {"conversation_id", "message_id"}
COUNTS = {"total", "running", "succeeded", "failed", "stopped", "partial_succeeded"}
DETAIL = {
    "id", "version", "graph", "inputs", "status", "outputs", "error", "elapsed_time", "handoff_duration",
    "total_tokens", "total_steps", "created_by_role", "created_by_account", "created_by_end_user",
    "created_at", "finished_at", "exceptions_count",
}  # fmt: skip
DETAIL_EXTRAS = {
    "created_by", "retry_index", "tenant_id", "app_id", "workflow_id", "type", "triggered_from",
    "truncated_fields",
}  # fmt: skip
NODE = {
    "id", "index", "predecessor_node_id", "node_id", "node_type", "title", "inputs", "process_data",
    "outputs", "status", "error", "elapsed_time", "execution_metadata", "extras", "created_at",
    "created_by_role", "created_by_account", "created_by_end_user", "finished_at", "inputs_truncated",
    "outputs_truncated", "process_data_truncated",
}  # fmt: skip


@pytest.fixture
def console(
    database_url: str, pg_conn: psycopg.Connection[Any]
) -> Iterator[tuple[TestClient[Any], list[str]]]:
    load_history(pg_conn, examples.history())
    load_node_history(pg_conn, node_examples.nodes())
    with serve_fake_dify(ACCOUNTS) as (dify_url, calls):
        settings = load_settings({"STATS_DATABASE_URL": database_url, "DIFY_CONSOLE_API_URL": dify_url})
        with TestClient(app=create_app(settings, Backend(database_url, settings))) as client:
            yield client, calls


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _get(client: TestClient[Any], path: str, token: str, **params: Any) -> Any:
    answer = client.get(BASE + path, params=params, headers=_as(token))
    assert answer.status_code == 200, (path, token, answer.text)
    return answer.json()


def test_each_route_answers_difys_fields(console: tuple[TestClient[Any], list[str]]) -> None:
    client, _ = console
    window = {"start": "2025-03-01 00:00", "end": "2025-03-03 00:00"}
    for path, field in STATISTICS.items():
        answer = _get(client, f"/workflow/statistics/{path}", "workflow", **window)
        assert set(answer) == {"data"} and answer["data"], path
        assert all(set(point) == {"date", field} for point in answer["data"]), path
    for path, fields in (("/workflow-runs", SUMMARY), ("/advanced-chat/workflow-runs", CHAT_SUMMARY)):
        page = _get(client, path, "chatflow", triggered_from="app-run")
        assert set(page) == {"limit", "has_more", "data"} and page["data"], path
        assert all(set(run) == fields | SUMMARY_EXTRAS for run in page["data"]), path
        assert all(run["handoff_duration"] == 0.0 for run in page["data"]), path
    for path in ("/workflow-runs/count", "/advanced-chat/workflow-runs/count"):
        assert set(_get(client, path, "chatflow")) == COUNTS, path
    detail = _get(client, f"/workflow-runs/{examples.R1}", "workflow")
    assert set(detail) == DETAIL | DETAIL_EXTRAS and detail["handoff_duration"] == 0.0
    nodes = _get(client, f"/workflow-runs/{examples.R1}/node-executions", "workflow")
    assert set(nodes) == {"data"} and nodes["data"]
    assert all(set(item) == NODE for item in nodes["data"])


def test_a_member_dify_refuses_a_permission_is_refused_as_dify_does(
    console: tuple[TestClient[Any], list[str]],
) -> None:
    """With Dify's role-based access control, the statistics need `app_monitor` and every run
    route `app_create_and_management`; both members may open the app."""
    client, _ = console
    status, code, message = FORBIDDEN
    refused = {"code": code, "message": message, "status": status}
    for path in STATISTICS:
        route = f"{BASE}/workflow/statistics/{path}"
        answer = client.get(route, headers=_as("no-monitor"))
        assert (answer.status_code, answer.json()) == (403, refused), path
        assert client.get(route, headers=_as("no-manage")).status_code != 403, path
    for path in RUN_ROUTES:
        answer = client.get(BASE + path, headers=_as("no-manage"))
        assert (answer.status_code, answer.json()) == (403, refused), path
        assert client.get(BASE + path, headers=_as("no-monitor")).status_code == 200, path


def test_an_app_of_another_mode_is_refused_as_dify_does(console: tuple[TestClient[Any], list[str]]) -> None:
    client, _ = console

    def refusal(modes: str) -> dict[str, Any]:
        message = f"App mode is not in the supported list: {modes}"
        return {"code": "app_not_found", "message": message, "status": 404}

    expected = {
        "workflow": {"/advanced-chat/workflow-runs": refusal("{'advanced-chat'}")},
        "chatflow": {"/workflow/statistics/average-app-interactions": refusal("{'workflow'}")},
        "chat": {
            **{path: refusal("{'advanced-chat', 'workflow'}") for path in RUN_ROUTES[:4]},
            **{path: refusal("{'advanced-chat'}") for path in RUN_ROUTES[4:]},
            "/workflow/statistics/average-app-interactions": refusal("{'workflow'}"),
        },
    }
    expected["workflow"]["/advanced-chat/workflow-runs/count"] = refusal("{'advanced-chat'}")
    for token, refused in expected.items():
        for path in (*RUN_ROUTES, *(f"/workflow/statistics/{name}" for name in STATISTICS)):
            answer = client.get(BASE + path, headers=_as(token))
            if path in refused:
                assert (answer.status_code, answer.json()) == (404, refused[path]), (token, path)
            else:
                assert answer.status_code == 200, (token, path, answer.text)


def test_a_run_of_another_app_is_answered_as_dify_does(console: tuple[TestClient[Any], list[str]]) -> None:
    """Dify: the detail is a 404 in its words; the node executions an empty list."""
    client, _ = console
    for run in (examples.R6, "f0000000-0000-4000-8000-000000000000"):  # tenant U's run; no run
        detail = client.get(f"{BASE}/workflow-runs/{run}", headers=_as("workflow"))
        assert (detail.status_code, detail.json()) == (
            404,
            {"code": "not_found", "message": "Workflow run not found", "status": 404},
        )
        nodes = client.get(f"{BASE}/workflow-runs/{run}/node-executions", headers=_as("workflow"))
        assert (nodes.status_code, nodes.json()) == (200, {"data": []})


def test_the_permission_is_asked_once_per_caller_and_question(
    console: tuple[TestClient[Any], list[str]],
) -> None:
    client, calls = console
    for path in (*RUN_ROUTES[:4], *RUN_ROUTES[:4]):
        assert client.get(BASE + path, headers=_as("chatflow")).status_code == 200
    for name in (*STATISTICS, *STATISTICS):
        assert client.get(f"{BASE}/workflow/statistics/{name}", headers=_as("workflow")).status_code == 200
    # One app detail per caller; one probe per caller and permission.
    assert (calls.count("app"), calls.count("node-executions"), calls.count("statistics")) == (2, 1, 1)
