"""Dify's advanced-chat (chatflow) run routes: the console's run list and counts, each run with the
chat message that started it, read from Dify's `messages`, for runs from either source."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from app.config import load_settings
from app.main import create_app
from app.stores.backend import Backend
from tests import examples
from tests.db import Message, load_history, load_messages, load_two_sources
from tests.fake_dify import Account, serve_fake_dify

A = examples.A
OTHER_APP = "a9000000-0000-4000-8000-0000000000a9"
CHAT = {"Authorization": "Bearer chat-token"}
ACCOUNTS = {
    "chat-token": Account(
        tenant_id=examples.T, timezone="UTC", apps=frozenset({A}), modes={A: "advanced-chat"}
    )
}
CHAT_RUNS = f"/console/api/apps/{A}/advanced-chat/workflow-runs"
RUNS = f"/console/api/apps/{A}/workflow-runs"
C1, C2, C3 = (f"c{n}000000-0000-4000-8000-000000000000" for n in range(1, 4))
M1, M2, M2_LATER, M3, M5, M_OTHER_APP = (f"d{n}000000-0000-4000-8000-000000000000" for n in range(1, 7))
EXPECTED = {  # run -> (conversation_id, message_id)
    examples.R1: (C1, M1),
    examples.R2: (C1, M2),  # its earliest message
    examples.R3: (C3, M3),
    examples.R4: (None, None),  # no message names it
    examples.R5: (C2, M5),
}


def _messages() -> list[Message]:
    def at(text: str, seconds: float) -> datetime:
        return datetime.fromisoformat(text) + timedelta(seconds=seconds)

    return [
        Message(M_OTHER_APP, OTHER_APP, C2, examples.R1, at("2025-03-01T15:59:00", 0)),  # another app's
        Message(M1, A, C1, examples.R1, at("2025-03-01T15:59:59.999999", -0.2)),
        Message(M2_LATER, A, C2, examples.R2, at("2025-03-01T16:00:00", 10)),
        Message(M2, A, C1, examples.R2, at("2025-03-01T16:00:00", -1)),
        Message(M3, A, C3, examples.R3, at("2025-03-01T17:30:00", -59 * 60)),  # within the slack
        Message("d9000000-0000-4000-8000-000000000000", A, C3, None, at("2025-03-01T18:00:00", 0)),
        Message(M5, A, C2, examples.R5, at("2025-03-02T03:00:00", -0.1)),
    ]


@contextmanager
def _client(database_url: str, dify_url: str, **env: str) -> Iterator[TestClient[Any]]:
    settings = load_settings({"DIFY_CONSOLE_API_URL": dify_url, **env})
    logstore = Backend(database_url, settings) if settings.database_url else None
    dify = settings.dify_database_url
    workflow_runs = Backend(dify, settings, dialect="postgres", name="workflow_runs") if dify else None
    with TestClient(app=create_app(settings, logstore, workflow_runs)) as client:
        yield client


@pytest.fixture
def dify_url() -> Iterator[str]:
    with serve_fake_dify(ACCOUNTS) as (url, _calls):
        yield url


def _pages(client: TestClient[Any], path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    while True:
        page = client.get(path, params=params, headers=CHAT)
        assert page.status_code == 200, page.text
        runs += page.json()["data"]
        if not page.json()["has_more"]:
            return runs
        params = {**params, "last_id": runs[-1]["id"]}


def _named(runs: list[dict[str, Any]]) -> dict[str, tuple[str | None, str | None]]:
    return {run["id"]: (run["conversation_id"], run["message_id"]) for run in runs}


def _as_workflow_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The advanced-chat entries less the two fields only they have."""
    return [{k: v for k, v in run.items() if k not in ("conversation_id", "message_id")} for run in runs]


def test_each_run_names_its_message_and_conversation(
    database_url: str, pg_conn: psycopg.Connection[Any], dify_url: str
) -> None:
    """From Dify's messages: the message of this app whose workflow_run_id is the run (the
    earliest when there are several), null where none is."""
    load_history(pg_conn, examples.history())
    load_messages(pg_conn, _messages())
    env = {
        "STATS_DATABASE_URL": database_url,
        "STATS_DIFY_DATABASE_URL": database_url,
        "STATS_LOGSTORE_SINCE": "2000-01-01T00:00:00+00:00",  # every run from the LogStore
    }
    with _client(database_url, dify_url, **env) as client:
        found: dict[str, tuple[str | None, str | None]] = {}
        for trigger in ("app-run", "debugging"):
            chat = _pages(client, CHAT_RUNS, {"triggered_from": trigger, "limit": 2})
            found |= _named(chat)
            plain = client.get(RUNS, params={"triggered_from": trigger, "limit": 100}, headers=CHAT).json()
            assert _as_workflow_runs(chat) == plain["data"]  # the same runs, fields and order
        assert found == EXPECTED


def test_without_difys_database_the_messages_are_null(
    database_url: str, pg_conn: psycopg.Connection[Any], dify_url: str
) -> None:
    load_history(pg_conn, examples.history())
    load_messages(pg_conn, _messages())
    with _client(database_url, dify_url, STATS_DATABASE_URL=database_url) as client:
        chat = _pages(client, CHAT_RUNS, {"triggered_from": "app-run", "limit": 3})
        assert [run["id"] for run in chat] == [examples.R4, examples.R3, examples.R2, examples.R1]
        assert set(_named(chat).values()) == {(None, None)}


def test_pages_filters_and_counts_are_those_of_workflow_runs(
    database_url: str, pg_conn: psycopg.Connection[Any], dify_url: str
) -> None:
    load_history(pg_conn, examples.history())
    with _client(database_url, dify_url, STATS_DATABASE_URL=database_url) as client:
        for params in (
            {"triggered_from": "app-run", "limit": 1},
            {"triggered_from": "app-run", "limit": 3, "status": "running"},
            {"triggered_from": "debugging", "limit": 20},
            {"triggered_from": "app-run", "limit": 2, "last_id": examples.R3},
        ):
            chat = client.get(CHAT_RUNS, params=params, headers=CHAT).json()
            plain = client.get(RUNS, params=params, headers=CHAT).json()
            assert {**chat, "data": _as_workflow_runs(chat["data"])} == plain, params
        for params in ({}, {"triggered_from": "app-run"}, {"triggered_from": "app-run", "status": "paused"}):
            chat_count = client.get(f"{CHAT_RUNS}/count", params=params, headers=CHAT)
            assert chat_count.status_code == 200, chat_count.text
            assert chat_count.json() == client.get(f"{RUNS}/count", params=params, headers=CHAT).json()
        counted = client.get(f"{CHAT_RUNS}/count", params={"triggered_from": "app-run"}, headers=CHAT)
        assert counted.json() == {
            "total": 4, "running": 1, "succeeded": 1, "failed": 1, "stopped": 0, "partial_succeeded": 0,
        }  # fmt: skip
        bad = client.get(CHAT_RUNS, params={"limit": 101}, headers=CHAT)
        assert (bad.status_code, bad.json()["code"]) == (400, "invalid_param") and "limit" in bad.json()[
            "message"
        ]


def test_runs_from_both_sources_name_their_messages(
    database_url: str, pg_conn: psycopg.Connection[Any], dify_url: str
) -> None:
    """During a migration r1 and r2 come from Dify's workflow_runs, r3 to r5 from the LogStore:
    the list continues across the boundary and every run's message is named alike."""
    since = "2025-03-01T17:00:00+00:00"
    history = examples.history()
    load_two_sources(pg_conn, history, _latest_versions(history))
    load_messages(pg_conn, _messages())
    env = {
        "STATS_DATABASE_URL": database_url,
        "STATS_DIFY_DATABASE_URL": database_url,
        "STATS_LOGSTORE_SINCE": since,
    }
    with _client(database_url, dify_url, **env) as client:
        chat = _pages(client, CHAT_RUNS, {"triggered_from": "app-run", "limit": 1})
        assert [run["id"] for run in chat] == [examples.R4, examples.R3, examples.R2, examples.R1]
        assert _named(chat) == {run: EXPECTED[run] for run in _named(chat)}
        count = client.get(f"{CHAT_RUNS}/count", params={"triggered_from": "app-run"}, headers=CHAT).json()
        assert count["total"] == 4


def _latest_versions(history: list[Any]) -> list[Any]:
    latest: dict[str, Any] = {}
    for version in history:
        kept = latest.get(version.id)
        if kept is None or (version.log_version, version.time) > (kept.log_version, kept.time):
            latest[version.id] = version
    return list(latest.values())
