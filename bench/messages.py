"""The advanced-chat run list's one read of Dify's `messages` per page, against what Dify does.

Runnable on its own (`python bench/messages.py`: a few minutes the first time, the data kept in
bench/data for the next run; figures in bench/messages_results.json and printed as a table).
The data: Dify's `messages` table (queries/workflow_runs_schema.sql, Dify's columns and indexes)
holding 1,000,000 chatflow messages over 90 days, 800,000 of them of one app, each naming its run.

For pages of 20 runs of that app (the newest, one from 30 days back, one from 89 days back),
medians of 7 after a warm-up:
- ours: queries/messages.run_messages, as the service sends it (one statement, the page's run ids
  as one array, created_at within STATS_TIME_SLACK of the page's created times);
- unbounded: the same statement without the created_at window (the app's every message);
- Dify: what Dify's console does for the same page, one lookup per run
  (`WorkflowRun.message`: app_id and workflow_run_id, first row).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.demo import copy_rows  # noqa: E402
from app.demo_messages import MESSAGE_COLUMNS  # noqa: E402
from bench.setups import database  # noqa: E402
from queries.messages import run_messages  # noqa: E402 - after the path set-up above

DATA = ROOT / "bench" / "data"
DATABASE = "bench_messages"
MESSAGES, OF_THE_APP, DAYS, PAGE = 1_000_000, 800_000, 90, 20
SLACK_S = 3600  # STATS_TIME_SLACK's default
NOW = datetime(2025, 11, 6)
APP = "a0000000-0000-4000-8000-0000000be55a"
OTHER_APPS = [f"a0000000-0000-4000-8000-00000000000{n}" for n in range(1, 5)]
DIFY_LOOKUP = "SELECT id, conversation_id FROM messages WHERE app_id = %s AND workflow_run_id = %s LIMIT 1"


def _rows(rng: random.Random) -> Iterator[tuple[Any, ...]]:
    for number in range(MESSAGES):
        app = APP if number < OF_THE_APP else rng.choice(OTHER_APPS)
        created = NOW - timedelta(seconds=rng.random() * DAYS * 86_400)
        values = {
            "id": uuid.UUID(int=rng.getrandbits(128), version=4), "app_id": app,
            "conversation_id": uuid.UUID(int=rng.getrandbits(128), version=4), "inputs": "{}",
            "query": "hello", "message": "[]", "message_unit_price": 0, "answer": "hi " * 40,
            "answer_unit_price": 0, "currency": "USD", "from_source": "api", "from_end_user_id": None,
            "from_account_id": None, "invoke_from": "web-app", "created_at": created, "updated_at": created,
            "workflow_run_id": uuid.UUID(int=rng.getrandbits(128), version=4),
        }  # fmt: skip
        yield tuple(values[column] for column in MESSAGE_COLUMNS)


def load(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(resources.files("queries").joinpath("workflow_runs_schema.sql").read_text())
        found = conn.execute("SELECT count(*) FROM messages").fetchone()
        if found is not None and found[0] == MESSAGES:
            return
        conn.execute("TRUNCATE messages")
        started = time.perf_counter()
        copy_rows(conn, _rows(random.Random(7)), "messages", MESSAGE_COLUMNS)  # noqa: S311 - seeded data
        conn.execute("VACUUM ANALYZE messages")
        print(f"loaded {MESSAGES} messages in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def _median_ms(work: Callable[[], object]) -> float:
    work()  # warm-up
    times = []
    for _ in range(7):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(url: str) -> list[dict[str, Any]]:
    records = []
    with psycopg.connect(url, autocommit=True) as conn:
        for label, offset_days in (("newest page", 0), ("30 days back", 30), ("89 days back", 89)):
            page = conn.execute(
                "SELECT CAST(workflow_run_id AS text), created_at FROM messages WHERE app_id = %s "
                "AND created_at < %s ORDER BY created_at DESC LIMIT %s",
                (APP, NOW - timedelta(days=offset_days), PAGE),
            ).fetchall()
            run_ids = [str(row[0]) for row in page]
            created = [row[1] for row in page]
            ours = run_messages(APP, run_ids, min(created) - timedelta(seconds=SLACK_S),
                                max(created) + timedelta(seconds=1 + SLACK_S))  # fmt: skip
            unbounded_sql = "\n".join(line for line in ours.sql.splitlines() if "created_at >=" not in line)
            found = conn.execute(ours.sql, ours.params).fetchall()
            assert len(found) == PAGE, "every run of the page has its message"
            assert conn.execute(unbounded_sql, ours.params).fetchall() == found

            def statement(sql: str, params: dict[str, object] = ours.params) -> Callable[[], object]:
                return lambda: conn.execute(sql, params).fetchall()

            def dify(run_ids: list[str] = run_ids) -> None:
                for run_id in run_ids:
                    conn.execute(DIFY_LOOKUP, (APP, run_id)).fetchone()

            record = {
                "page": label,
                "ours_ms": _median_ms(statement(ours.sql)),
                "unbounded_ms": _median_ms(statement(unbounded_sql)),
                "dify_per_run_ms": _median_ms(dify),
            }
            records.append(record)
    return records


def markdown_lines(records: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"Dify's messages: {MESSAGES:,} rows, {OF_THE_APP:,} of the app; a page of {PAGE} runs.",
        "",
        "| page | ours (1 statement) | without the created_at window | Dify (1 lookup per run) "
        "| Dify / ours |",
        "|---|---|---|---|---|",
    ]
    for record in records:
        ratio = record["dify_per_run_ms"] / record["ours_ms"]
        lines.append(
            f"| {record['page']} | {record['ours_ms']:.2f} ms | {record['unbounded_ms']:.1f} ms | "
            f"{record['dify_per_run_ms']:.1f} ms | {ratio:.0f}x |"
        )
    return lines


def main() -> int:
    import pgserver

    DATA.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(DATA / "pg", cleanup_mode="stop")  # type: ignore[attr-defined]
    url = database(server.get_uri(), DATABASE)
    load(url)
    records = measure(url)
    (ROOT / "bench" / "messages_results.json").write_text(json.dumps(records, indent=2) + "\n")
    print("\n".join(markdown_lines(records)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
