"""Demo node executions (and the people who ran them) for the demo's runs, loaded with COPY.

What Dify's node writer leaves behind for each run: a start node, an LLM or a knowledge
retrieval, sometimes a tool and an iteration of a few to a few hundred inner executions, an end
node; each execution written as a `running` version and then its final one (a retried node also
as `retry` versions; a paused run's last node `paused`, an unfinished run's last node still
`running`). On purpose, some outputs are longer than SLS's 2 KB field length, some runs also
carry `workflow-tool` executions (a workflow-as-tool's internals, which the console hides), and
versions sometimes share a log_version or arrive out of order. Seeded: the same runs give the
same rows.

Also Dify's `accounts` and `end_users` rows for the demo's users, so that a demo served with Dify's
database (a split demo) names who ran each run and node.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg

from app.demo import copy_rows

NODE_LOGSTORE_COLUMNS = (
    "__time__", "id", "log_version", "tenant_id", "app_id", "workflow_id", "triggered_from",
    "workflow_run_id", "index", "predecessor_node_id", "node_execution_id", "node_id", "node_type", "title",
    "inputs", "process_data", "outputs", "status", "error", "elapsed_time", "execution_metadata",
    "created_at", "created_by_role", "created_by", "finished_at",
)  # fmt: skip
NODE_TABLE_COLUMNS = (
    "id", "tenant_id", "app_id", "workflow_id", "triggered_from", "workflow_run_id", "index",
    "predecessor_node_id", "node_execution_id", "node_id", "node_type", "title", "inputs", "process_data",
    "outputs", "status", "error", "elapsed_time", "execution_metadata", "created_at", "created_by_role",
    "created_by", "finished_at",
)  # fmt: skip
FINAL_NODE_STATUS = {"succeeded": "succeeded", "partial-succeeded": "exception", "failed": "failed"}
LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 80  # ~3.6 KB: longer than SLS's 2 KB


class DemoRun(msgspec.Struct, frozen=True):
    """What the node generator needs of a run (its latest version)."""

    id: str
    tenant_id: str
    app_id: str
    workflow_id: str
    status: str
    created_by_role: str
    created_by: str
    created_at: datetime  # naive UTC
    finished_at: datetime | None  # naive UTC


class _Step(msgspec.Struct, frozen=True):
    node_id: str
    node_type: str
    title: str
    triggered_from: str = "workflow-run"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _plan(rng: random.Random, run: DemoRun, executions: int | None) -> list[_Step]:
    """The node executions of a run, in execution order; `executions`: exactly that many (an
    iteration fills what the fixed nodes leave)."""
    head = [_Step("start", "start", "Start"), _Step("llm", "llm", "LLM")]
    if executions is None:
        if rng.random() < 0.2:
            head.append(_Step("retrieval", "knowledge-retrieval", "Knowledge Retrieval"))
        if rng.random() < 0.1:
            head.append(_Step("tool", "tool", "Web Search"))
        inner = rng.choice((0, 0, 0, 0, 3)) if rng.random() < 0.995 else rng.randrange(20, 120)
    else:
        inner = max(0, executions - len(head) - 2) if executions >= 4 else 0
        head = head[: max(0, min(len(head), executions - 1))]
    steps = list(head)
    if inner:
        steps.append(_Step("iteration", "iteration", "Iteration"))
        steps += [_Step("code", "code", "Code") for _ in range(inner)]
    if executions is None or len(steps) < executions:
        steps.append(_Step("end", "end", "End"))
    if executions is None and rng.random() < 0.02:  # a workflow-as-tool's internals: hidden
        steps += [_Step(f"tool-{n}", "llm", "Inner LLM", "workflow-tool") for n in range(3)]
    return steps


def node_versions(
    rng: random.Random, run: DemoRun, executions: int | None = None
) -> Iterator[tuple[Any, ...]]:
    """LogStore rows (NODE_LOGSTORE_COLUMNS order) of the run's node executions."""
    steps = _plan(rng, run, executions)
    created_s = int(run.created_at.replace(tzinfo=UTC).timestamp())
    span = (run.finished_at - run.created_at).total_seconds() if run.finished_at else 30.0
    unfinished = run.finished_at is None
    final_status = FINAL_NODE_STATUS.get(run.status, "stopped" if run.status == "stopped" else "succeeded")
    predecessor = ""
    long_values = rng.random() < 0.05
    for position, step in enumerate(steps):
        started = run.created_at + timedelta(seconds=span * position / (len(steps) + 1))
        elapsed = round(span / (len(steps) + 1), 6)
        finished = started + timedelta(seconds=elapsed)
        last = position == len(steps) - 1
        status = "succeeded"
        if last and unfinished:
            status = "paused" if run.status == "paused" else "running"
        elif last:
            status = final_status
        node_execution_id = _uuid(rng)
        inputs = json.dumps({"query": "hello", "item": position}) if step.node_type != "start" else "{}"
        outputs = json.dumps(
            {"text": (LONG_TEXT if long_values and step.node_type == "llm" else f"answer {position}")}
        )
        metadata = json.dumps({"total_tokens": rng.randrange(0, 900)}) if step.node_type == "llm" else "{}"
        common = {
            "id": _uuid(rng),
            "tenant_id": run.tenant_id,
            "app_id": run.app_id,
            "workflow_id": run.workflow_id,
            "triggered_from": step.triggered_from,
            "workflow_run_id": run.id,
            "index": position + 1,
            "predecessor_node_id": predecessor,
            "node_execution_id": node_execution_id,
            "node_id": step.node_id,
            "node_type": step.node_type,
            "title": step.title,
            "inputs": inputs,
            "created_at": started.isoformat(),
            "created_by_role": run.created_by_role,
            "created_by": run.created_by,
        }
        log_version = int(started.replace(tzinfo=UTC).timestamp() * 1_000_000_000)
        written = created_s + int(span * position / (len(steps) + 1))
        versions: list[tuple[str, str, str, str, float | None, str]] = [("running", "", "{}", "", None, "")]
        if status == "succeeded" and rng.random() < 0.02:
            versions.append(("retry", "", "{}", "timeout, retrying", None, ""))
        if status not in ("running",):
            done = status != "paused"
            versions.append(
                (
                    status,
                    outputs if status in ("succeeded", "exception") else "",
                    metadata,
                    "node failed" if status in ("failed", "exception") else "",
                    elapsed if done else None,
                    finished.isoformat() if done else "",
                )
            )
        out_of_order = rng.random() < 0.03
        for number, (
            version_status,
            version_outputs,
            version_metadata,
            error,
            version_elapsed,
            finished_text,
        ) in enumerate(versions):
            tie = number > 0 and rng.random() < 0.01  # a version sharing its predecessor's log_version
            log_version += 0 if tie else rng.randrange(1_000_000, 900_000_000)
            arrival = written + number + (5 if out_of_order and number == 0 else 0)
            values = {
                **common,
                "__time__": arrival,
                "log_version": log_version,
                "process_data": "{}" if version_status == "running" else json.dumps({"step": number}),
                "outputs": version_outputs,
                "status": version_status,
                "error": error,
                "elapsed_time": version_elapsed,
                "execution_metadata": version_metadata,
                "finished_at": finished_text,
            }
            yield tuple(values[column] for column in NODE_LOGSTORE_COLUMNS)
        predecessor = step.node_id


def latest_node_rows(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Dify's `workflow_node_executions` rows (NODE_TABLE_COLUMNS order) for LogStore rows: each
    execution's latest version (log_version, then __time__) as its row."""
    latest: dict[str, tuple[Any, ...]] = {}
    for row in rows:
        seen = latest.get(row[1])
        if seen is None or (row[2], row[0]) > (seen[2], seen[0]):
            latest[row[1]] = row
    table = []
    for row in latest.values():
        values = dict(zip(NODE_LOGSTORE_COLUMNS, row, strict=True))
        values.update(
            predecessor_node_id=values["predecessor_node_id"] or None,
            error=values["error"] or None,
            elapsed_time=values["elapsed_time"] or 0.0,
            created_at=datetime.fromisoformat(values["created_at"]),
            finished_at=datetime.fromisoformat(values["finished_at"]) if values["finished_at"] else None,
        )
        table.append(tuple(values[column] for column in NODE_TABLE_COLUMNS))
    return table


def people_rows(runs: Iterable[DemoRun]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(accounts rows, end_users rows) for the runs' users: Dify's `accounts (id, name, email)`
    and `end_users (id, tenant_id, app_id, type, is_anonymous, session_id)`."""
    accounts: dict[str, tuple[Any, ...]] = {}
    end_users: dict[str, tuple[Any, ...]] = {}
    for run in runs:
        if run.created_by_role == "account" and run.created_by not in accounts:
            number = len(accounts) + 1
            accounts[run.created_by] = (
                run.created_by,
                f"Demo Account {number}",
                f"account{number}@example.com",
            )
        elif run.created_by_role == "end_user" and run.created_by not in end_users:
            anonymous = len(end_users) % 3 != 0
            session = f"session-{len(end_users) + 1}"
            end_users[run.created_by] = (
                run.created_by, run.tenant_id, run.app_id, "browser" if anonymous else "service_api",
                anonymous, session,
            )  # fmt: skip
    return list(accounts.values()), list(end_users.values())


_LATEST_LOGSTORE_RUNS = """
SELECT DISTINCT ON (id) id, tenant_id, app_id, workflow_id, status, created_by_role, created_by,
       coalesce(nullif(created_at, ''), started_at), nullif(finished_at, '')
FROM workflow_execution
ORDER BY id, log_version DESC, __time__ DESC"""
_TABLE_RUNS = """
SELECT CAST(id AS text), CAST(tenant_id AS text), CAST(app_id AS text), CAST(workflow_id AS text), status,
       created_by_role, CAST(created_by AS text), created_at, finished_at
FROM workflow_runs
ORDER BY id"""


def _demo_run(row: tuple[Any, ...]) -> DemoRun:
    def naive(value: Any) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        moment = datetime.fromisoformat(value)
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment

    created = naive(row[7])
    assert created is not None
    run_id, tenant_id, app_id, workflow_id, status, role, user = (str(value) for value in row[:7])
    return DemoRun(run_id, tenant_id, app_id, workflow_id, status, role, user, created, naive(row[8]))


def load_demo_nodes(conn: psycopg.Connection[Any], split_at: datetime | None, seed: int = 7) -> int:
    """Node executions for every run already loaded, and the people who ran them; returns the
    number of LogStore node rows. A split demo (runs in workflow_runs) holds, like Dify's dual
    write: every run's executions in workflow_node_executions, and the versions of the runs the
    LogStore holds in the node LogStore. What those tables held before is replaced: they are
    derived from every run loaded."""
    conn.execute("TRUNCATE workflow_node_execution, workflow_node_executions, accounts, end_users")
    rng = random.Random(seed)
    in_logstore = {str(row[0]) for row in conn.execute("SELECT DISTINCT id FROM workflow_execution")}
    table_runs = [_demo_run(row) for row in conn.execute(_TABLE_RUNS)]
    runs = table_runs or [_demo_run(row) for row in conn.execute(_LATEST_LOGSTORE_RUNS)]
    logstore_rows: list[tuple[Any, ...]] = []
    table_rows: list[tuple[Any, ...]] = []
    for run in sorted(runs, key=lambda run: run.id):
        versions = list(node_versions(rng, run))
        if run.id in in_logstore:
            logstore_rows += versions
        if split_at is not None:
            table_rows += latest_node_rows(versions)
    count = copy_rows(conn, logstore_rows, "workflow_node_execution", NODE_LOGSTORE_COLUMNS)
    copy_rows(conn, table_rows, "workflow_node_executions", NODE_TABLE_COLUMNS)
    accounts, end_users = people_rows(runs)
    copy_rows(conn, accounts, "accounts", ("id", "name", "email"))
    copy_rows(
        conn, end_users, "end_users", ("id", "tenant_id", "app_id", "type", "is_anonymous", "session_id")
    )
    conn.execute("VACUUM ANALYZE workflow_node_execution")
    return count
