"""Dify's `messages` rows for the demo's chatflow runs, loaded with COPY.

In Dify a chatflow (advanced-chat) app's every run is started by a chat message, created just
before the run, whose `workflow_run_id` names it; a user's messages of one day share a
conversation here. The demo's chatflow runs are its runs of type `chat`. Written beside Dify's
`workflow_runs`, so that a demo served with Dify's database (a split demo) names each chatflow
run's message and conversation in the console's advanced-chat run list. Seeded: the same runs
give the same rows.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg

from app.demo import copy_rows

MESSAGE_COLUMNS = (
    "id", "app_id", "conversation_id", "inputs", "query", "message", "message_unit_price", "answer",
    "answer_unit_price", "currency", "from_source", "from_end_user_id", "from_account_id", "invoke_from",
    "created_at", "updated_at", "workflow_run_id",
)  # fmt: skip


class ChatRun(msgspec.Struct, frozen=True):
    """What a message needs of a chatflow run."""

    id: str
    app_id: str
    triggered_from: str
    created_by_role: str
    created_by: str
    created_at: datetime  # naive UTC


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def message_rows(runs: Iterable[ChatRun], seed: int = 7) -> list[tuple[Any, ...]]:
    """One message per run (in MESSAGE_COLUMNS order), created 5 to 300 ms before it; a user's
    runs of one app and day share a conversation."""
    rng = random.Random(seed)  # noqa: S311 - a seeded demo, not a secret
    conversations: dict[tuple[str, str, str], str] = {}
    rows = []
    for run in sorted(runs, key=lambda run: run.id):
        day = run.created_at.date().isoformat()
        conversation = conversations.setdefault((run.app_id, run.created_by, day), _uuid(rng))
        created = run.created_at - timedelta(milliseconds=rng.randrange(5, 300))
        account = run.created_by_role == "account"
        source = "console" if account else "api"
        end_user, account_id = (None, run.created_by) if account else (run.created_by, None)
        invoke_from = "debugger" if run.triggered_from == "debugging" else "web-app"
        rows.append(
            (_uuid(rng), run.app_id, conversation, '{"query": "hello"}', "hello", "[]", 0, "hi", 0, "USD",
             source, end_user, account_id, invoke_from, created, created, run.id)
        )  # fmt: skip
    return rows


_TABLE_CHAT_RUNS = """
SELECT CAST(id AS text), CAST(app_id AS text), triggered_from, created_by_role, CAST(created_by AS text),
       created_at
FROM workflow_runs
WHERE type = 'chat'"""
_LOGSTORE_CHAT_RUNS = """
SELECT DISTINCT ON (id) id, app_id, triggered_from, created_by_role, created_by,
       coalesce(nullif(created_at, ''), started_at)
FROM workflow_execution
WHERE type = 'chat'
ORDER BY id, log_version DESC, __time__ DESC"""


def _chat_run(row: tuple[Any, ...]) -> ChatRun:
    created = row[5]
    if not isinstance(created, datetime):
        moment = datetime.fromisoformat(created)
        created = moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    run_id, app_id, triggered_from, role, user = (str(value) for value in row[:5])
    return ChatRun(run_id, app_id, triggered_from, role, user, created)


def load_demo_messages(conn: psycopg.Connection[Any], seed: int = 7) -> int:
    """Messages for every chatflow run already loaded (Dify's table has every run of a split
    demo; otherwise the LogStore's runs); returns how many. What `messages` held is replaced."""
    conn.execute("TRUNCATE messages")
    runs = [_chat_run(row) for row in conn.execute(_TABLE_CHAT_RUNS)]
    runs = runs or [_chat_run(row) for row in conn.execute(_LOGSTORE_CHAT_RUNS)]
    return copy_rows(conn, message_rows(runs, seed), "messages", MESSAGE_COLUMNS)
