"""A realistic demo history: what Dify's LogStore writer leaves behind, loaded with COPY.

Shared by the embedded default (~20 k runs) and the benchmark (1 M runs). Seeded, so the same
arguments give the same rows. What it contains, on purpose:
- 3 tenants, 6 apps, users of both roles, every trigger source and every status;
- a `running` version first, paused/resumed cycles, a finished version, sometimes duplicate
  finished versions (retries) carrying different tokens, and re-sent identical rows;
- rows whose arrival time (`__time__`) does not follow log_version (out-of-order versions);
- some runs from an older writer with `created_at = ''` (created time is then started_at);
- unfinished runs on every day (stuck or waiting), and more among the last hours' runs, which
  are not more numerous for it: every day has about as many runs as the days before.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg

COLUMNS = (
    "__time__", "id", "log_version", "tenant_id", "app_id", "workflow_id", "triggered_from", "type",
    "version", "graph", "inputs", "outputs", "status", "error_message", "total_tokens", "total_steps",
    "exceptions_count", "elapsed_time", "created_by_role", "created_by", "created_at", "started_at",
    "finished_at",
)  # fmt: skip

TRIGGER_WEIGHTS = {
    "app-run": 60,
    "debugging": 15,
    "webhook": 8,
    "schedule": 6,
    "plugin": 4,
    "rag-pipeline-run": 5,
    "rag-pipeline-debugging": 2,
}
FINAL_WEIGHTS = {
    "succeeded": 78,
    "failed": 9,
    "stopped": 4,
    "partial-succeeded": 4,
    "running": 2,
    "paused": 3,
}
LIVE_HOURS = timedelta(hours=6)
GRAPH = '{"nodes": [{"id": "start", "type": "start"}, {"id": "llm", "type": "llm"}], "edges": []}'


class DemoApp(msgspec.Struct, frozen=True):
    tenant_id: str
    app_id: str
    workflow_id: str
    type: str
    users: tuple[tuple[str, str], ...]  # (created_by_role, created_by)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def demo_apps(seed: int = 7) -> list[DemoApp]:
    rng = random.Random(seed)
    apps = []
    for _tenant in range(3):
        tenant_id = _uuid(rng)
        for app_type in ("workflow", "chat"):
            accounts = [("account", _uuid(rng)) for _ in range(rng.randint(2, 5))]
            end_users = [("end_user", _uuid(rng)) for _ in range(rng.randint(20, 120))]
            apps.append(DemoApp(tenant_id, _uuid(rng), _uuid(rng), app_type, tuple(accounts + end_users)))
    return apps


def _iso(moment: datetime) -> str:
    """Naive UTC ISO-8601, exactly as Dify writes (no fraction when it is zero)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat()


def generate_rows(
    runs: int, *, days: int = 90, seed: int = 7, now: datetime | None = None
) -> Iterator[tuple[Any, ...]]:
    """Rows (in COPY column order) of `runs` runs created over the `days` days before `now`."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    rng = random.Random(seed)
    apps = demo_apps(seed)
    app_weights = [5, 3, 2, 2, 1, 1]
    triggers, trigger_weights = list(TRIGGER_WEIGHTS), list(TRIGGER_WEIGHTS.values())
    finals, final_weights = list(FINAL_WEIGHTS), list(FINAL_WEIGHTS.values())
    span_s = days * 86_400
    for _ in range(runs):
        app = rng.choices(apps, app_weights)[0]
        created = now - timedelta(
            seconds=span_s * (1 - rng.random() ** 1.3), microseconds=rng.randrange(1_000_000)
        )
        final = rng.choices(finals, final_weights)[0]
        if now - created < LIVE_HOURS and rng.random() < 0.25:  # some of the last hours' runs go on
            final = rng.choice(("running", "paused"))
        yield from _run_rows(rng, app, created, final, rng.choices(triggers, trigger_weights)[0], now)


def _run_rows(
    rng: random.Random, app: DemoApp, created: datetime, final: str, trigger: str, now: datetime
) -> Iterator[tuple[Any, ...]]:
    role, user = rng.choice(app.users)
    run_id = _uuid(rng)
    created_text = _iso(created)
    older_writer = rng.random() < 0.05
    version = rng.choice(("draft", "2025-05-01 10:00:00.000001", "2025-08-12 16:30:00.250000"))
    statuses = ["running"]
    for _ in range(1 if rng.random() < 0.06 else 0):
        statuses += ["paused", "running"]
    if final == "paused":
        statuses.append("paused")
    elif final != "running":
        statuses += [final] * (2 if rng.random() < 0.04 else 1)
    elapsed = rng.uniform(0.3, 40.0)
    finished = min(created + timedelta(seconds=elapsed), now)
    finished_text = _iso(finished) if final not in ("running", "paused") else ""
    tokens = rng.randrange(50, 6000) if trigger not in ("schedule", "webhook") or rng.random() < 0.5 else 0
    log_version = int(created.timestamp() * 1_000_000_000)
    created_s = int(created.timestamp())
    out_of_order = rng.random() < 0.03
    for position, status in enumerate(statuses):
        log_version += rng.randrange(1_000_000, 2_000_000_000)
        is_final = status == final and final not in ("running", "paused")
        arrival = created_s + position * 2 + rng.randrange(0, 3)
        if out_of_order and position == 0 and len(statuses) > 1:
            arrival += 30  # the first version arrives after a later one
        row = (
            arrival,
            run_id,
            log_version,
            app.tenant_id,
            app.app_id,
            app.workflow_id,
            trigger,
            app.type,
            version,
            GRAPH,
            '{"query": "hello"}',
            '{"answer": "hi"}' if is_final else "",
            status,
            "model timeout" if status == "failed" else "",
            _tokens_of(rng, tokens, status, is_final, position, statuses),
            position + 1 if is_final else position,
            1 if status == "partial-succeeded" else 0,
            round((finished - created).total_seconds(), 6) if is_final and rng.random() < 0.9 else None,
            role,
            user,
            "" if older_writer else created_text,
            created_text,
            finished_text if is_final else "",
        )
        yield row
        if rng.random() < 0.01:
            yield (row[0] + 5, *row[1:])  # a re-sent identical row


def _tokens_of(
    rng: random.Random, tokens: int, status: str, is_final: bool, position: int, statuses: list[str]
) -> int:
    """Unfinished versions carry partial tokens; a retried finished version carries a few more."""
    if not is_final:
        return tokens // 3 if position else 0
    first_final = statuses.index(status)
    return tokens if position == first_final else tokens + rng.randrange(1, 50)


def copy_rows(
    conn: psycopg.Connection[Any],
    rows: Iterable[tuple[Any, ...]],
    table: str = "workflow_execution",
    columns: tuple[str, ...] = COLUMNS,
) -> int:
    """COPY rows (in `columns` order) into `table`; returns how many."""
    count = 0
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


# --- a migrating deployment: the same history split between workflow_runs and the LogStore ----

WORKFLOW_RUNS_COLUMNS = (
    "id", "tenant_id", "app_id", "workflow_id", "type", "triggered_from", "version", "graph", "inputs",
    "status", "outputs", "error", "elapsed_time", "total_tokens", "total_steps", "created_by_role",
    "created_by", "created_at", "finished_at", "exceptions_count",
)  # fmt: skip
DUAL_WRITE_DAYS = 7


def _utc_naive(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def workflow_runs_row(latest: tuple[Any, ...]) -> tuple[Any, ...]:
    """Dify's `workflow_runs` row for a run whose latest LogStore version is `latest`."""
    row = dict(zip(COLUMNS, latest, strict=True))
    created = _utc_naive(row["created_at"] or row["started_at"])
    finished = _utc_naive(row["finished_at"]) if row["finished_at"] else None
    elapsed = row["elapsed_time"]
    if elapsed is None:
        started = _utc_naive(row["started_at"])
        elapsed = (finished - started).total_seconds() if finished else 0.0
    values = {
        **row,
        "error": row["error_message"] or None,
        "elapsed_time": elapsed,
        "created_at": created,
        "finished_at": finished,
    }
    return tuple(values[column] for column in WORKFLOW_RUNS_COLUMNS)


def split_rows(
    rows: Iterable[tuple[Any, ...]], split_at: datetime, dual_write_days: int = DUAL_WRITE_DAYS
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(LogStore rows, workflow_runs rows) of a deployment that reads the LogStore from `split_at`.

    Dify began dual writing `dual_write_days` before the switch and still does: workflow_runs
    has every run (its latest state), the LogStore every version written since dual writing
    began. The service must read each run from one side only."""
    split = split_at.astimezone(UTC).replace(tzinfo=None)
    dual_from = split - timedelta(days=dual_write_days)
    runs: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        runs.setdefault(row[1], []).append(row)
    logstore: list[tuple[Any, ...]] = []
    workflow_runs: list[tuple[Any, ...]] = []
    for versions in runs.values():
        latest = max(versions, key=lambda version: (version[2], version[0]))  # log_version, __time__
        created = _utc_naive(latest[20] or latest[21])  # created_at, else started_at
        workflow_runs.append(workflow_runs_row(latest))  # Dify's table has every run
        if created >= dual_from:  # the LogStore has what was written since dual writing began
            logstore += versions
    return logstore, workflow_runs


def copy_workflow_runs(conn: psycopg.Connection[Any], rows: Iterable[tuple[Any, ...]]) -> int:
    return copy_rows(conn, rows, "workflow_runs", WORKFLOW_RUNS_COLUMNS)
