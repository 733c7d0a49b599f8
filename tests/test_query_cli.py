"""`python -m app query` as a user runs it: a subprocess over the test database, whose answers are
the API's answers for the same values, and whose bad values are the API's 400 messages (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from app.core.measures import DAILY_MEASURES
from tests import examples, reference
from tests.db import load_history, load_two_sources

ROOT = Path(__file__).resolve().parents[1]
T, A = examples.T, examples.A
BASE = f"/v1/tenants/{T}/apps/{A}"


@pytest.fixture(autouse=True)
def example_history(pg_conn: psycopg.Connection[Any]) -> None:
    load_history(pg_conn, examples.history())


def query(database_url: str, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """`python -m app query ...` with only the test database (and `settings`) configured."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("STATS_", "ALIYUN_"))}
    env.update(settings, STATS_DATABASE_URL=database_url)
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "app", "query", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _options(params: dict[str, str]) -> list[str]:
    return [item for name, value in params.items() for item in (f"--{name.replace('_', '-')}", value)]


CASES = [
    {"start": "2025-03-01", "end": "2025-03-03", "timezone": "Asia/Shanghai"},
    {"start": "2025-03-01 08:00", "timezone": "Europe/Berlin"},
    {"triggered_from": "debugging"},
]


def test_json_is_the_apis_answer_for_every_measure(database_url: str, client: TestClient[Any]) -> None:
    paths = {
        f"statistics{measure.native_path}": measure.native_path.lstrip("/") for measure in DAILY_MEASURES
    }
    checked = 0
    for path, name in paths.items():
        for params in CASES:
            api = client.get(f"{BASE}/{path}", params=params)
            assert api.status_code == 200, api.text
            printed = query(database_url, name, "--tenant", T, "--app", A, *_options(params), "--json")
            assert printed.returncode == 0, printed.stderr
            assert json.loads(printed.stdout) == api.json(), (name, params)
            checked += bool(api.json()["data"])
    assert checked >= 8  # most cases have runs
    for params in ({"triggered_from": "app-run"}, {"triggered_from": "app-run", "status": "paused"}, {}):
        api = client.get(f"{BASE}/runs/count", params=params)
        printed = query(database_url, "runs-count", "--tenant", T, "--app", A, *_options(params), "--json")
        assert printed.returncode == 0, printed.stderr
        assert json.loads(printed.stdout) == api.json(), params


def test_tables_are_aligned(database_url: str) -> None:
    daily = query(database_url, "daily-runs", "--tenant", T, "--app", A, "--timezone", "Asia/Shanghai")
    assert daily.returncode == 0, daily.stderr
    assert daily.stdout.splitlines() == ["date        runs", "2025-03-01     1", "2025-03-02     3"]
    durations = query(
        database_url, "daily-duration", "--tenant", T, "--app", A, "--timezone", "Asia/Shanghai"
    )
    assert durations.returncode == 0, durations.stderr
    assert durations.stdout.splitlines() == [
        "date        count  p50  p95  p99  max",
        "2025-03-01      1  4.9  4.9  4.9  4.9",
        "2025-03-02      1  1.5  1.5  1.5  1.5",
    ]
    counts = query(
        database_url, "runs-count", "--tenant", T, "--app", A, "--triggered-from", "app-run",
        "--start", "2025-03-01T17:00:00Z",
    )  # fmt: skip
    assert counts.returncode == 0, counts.stderr
    assert counts.stdout.splitlines() == [
        "status             runs",
        "total                 2",  # r3 and r4, both unfinished; r4 is paused
        "running               1",
        "succeeded             0",
        "failed                0",
        "stopped               0",
        "partial_succeeded     0",
    ]


@pytest.mark.parametrize(
    ("args", "path", "params"),
    [
        (["daily-runs", "--timezone", "Mars/Olympus"], "statistics/daily-runs", {"timezone": "Mars/Olympus"}),
        (["daily-status", "--timezone", "localtime"], "statistics/daily-status", {"timezone": "localtime"}),
        (["token-costs", "--start", "2025-13-01"], "statistics/token-costs", {"start": "2025-13-01"}),
        (
            ["daily-terminals", "--start", "2025-03-02", "--end", "2025-03-01"],
            "statistics/daily-terminals",
            {"start": "2025-03-02", "end": "2025-03-01"},
        ),
        (["runs-count", "--time-range", "401d"], "runs/count", {"time_range": "401d"}),
    ],
)
def test_a_bad_value_is_the_apis_message_and_exit_2(
    database_url: str, client: TestClient[Any], args: list[str], path: str, params: dict[str, str]
) -> None:
    api = client.get(f"{BASE}/{path}", params=params)
    assert api.status_code == 400
    printed = query(database_url, *args, "--tenant", T, "--app", A)
    assert printed.returncode == 2
    assert printed.stdout == ""
    assert printed.stderr.strip() == f"dify-stats: invalid_param: {api.json()['message']}"


def test_ids_and_choices_litestar_checks_on_the_api_are_checked_too(
    database_url: str, client: TestClient[Any]
) -> None:
    """With the API's own messages: an id without dashes must be a UUID, a choice lists the choices."""
    undashed = A.replace("-", "")
    api = client.get(f"/v1/tenants/{T}/apps/{undashed}/statistics/daily-runs").json()["message"]
    bad_app = query(database_url, "daily-runs", "--tenant", T, "--app", undashed)
    assert (bad_app.returncode, bad_app.stderr.strip()) == (2, f"dify-stats: invalid_param: {api}")
    assert api.startswith("app_id: must be a UUID")
    api = client.get(f"{BASE}/runs/count", params={"triggered_from": "cron"}).json()["message"]
    bad_trigger = query(database_url, "runs-count", "--tenant", T, "--app", A, "--triggered-from", "cron")
    assert (bad_trigger.returncode, bad_trigger.stderr.strip()) == (2, f"dify-stats: invalid_param: {api}")
    assert api.startswith("triggered_from: must be one of: debugging")
    misplaced = query(database_url, "daily-runs", "--tenant", T, "--app", A, "--status", "failed")
    assert (misplaced.returncode, misplaced.stderr.strip()) == (
        2,
        "dify-stats: invalid_param: status: applies to runs-count only",
    )


def test_two_sources_answer_as_the_whole_history(database_url: str, pg_conn: psycopg.Connection[Any]) -> None:
    """Split at 2025-03-01T17:00Z: r1, r2 (alice) in workflow_runs, r3, r4 (bob) in the LogStore;
    the Shanghai day 2025-03-02 has users on both sides."""
    args = ("--tenant", T, "--app", A, "--timezone", "Asia/Shanghai", "--json")
    whole = {name: query(database_url, name, *args).stdout for name in ("daily-terminals", "token-costs")}
    split_us = 1740848400 * 1_000_000
    history = examples.history()
    load_two_sources(
        pg_conn,
        [row for row in history if reference.created_us(row) >= split_us],
        [run for run in reference.latest_versions(history) if reference.created_us(run) < split_us],
    )
    for name, answer in whole.items():
        split = query(
            database_url, name, *args,
            STATS_DIFY_DATABASE_URL=database_url, STATS_LOGSTORE_SINCE="2025-03-01T17:00:00Z",
        )  # fmt: skip
        assert split.returncode == 0, split.stderr
        assert json.loads(split.stdout) == json.loads(answer), name
        assert json.loads(answer)["data"], name


def test_a_bad_command_line_is_one_line_and_exit_2(database_url: str) -> None:
    for args in ((), ("daily-runs", "--tenant", examples.T, "--app", examples.A, "--bogus"), ("no-such",)):
        done = query(database_url, *args)
        assert done.returncode == 2, args
        assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert done.stderr.startswith("dify-stats: ") and "Traceback" not in done.stderr


def test_sql_prints_each_statement_as_sent_with_its_values_in(database_url: str, sls_standin: Any) -> None:
    """`--sql`: the statements one question sends, ready to paste into SLS's console; through the
    SLS stand-in each one printed is exactly what reached it, and the answer follows."""
    sls_standin.counters.reset()
    done = query(
        sls_standin.url,
        "daily-runs", "--tenant", T, "--app", A, "--start", "2025-03-01", "--end", "2025-03-03",
        "--timezone", "Asia/Shanghai", "--sql",
        STATS_DIALECT="sls", ALIYUN_SLS_LOGSTORE_TTL="36500",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed, answer = done.stdout.rsplit(";\n\n", 1)
    statements = [block.split("\n", 1)[1] for block in printed.split(";\n\n")]
    assert all(block.startswith("-- logstore\n") for block in printed.split(";\n\n"))
    sent = [seen.sql.strip() for seen in sls_standin.counters.statements() if "AS ok" not in seen.sql]
    assert statements == sent and len(sent) == 1
    assert f"tenant_id = '{T}'" in statements[0] and "%(" not in statements[0]
    assert "2025-03-02" in answer and "3" in answer  # the table follows the statements


def test_a_refused_statement_is_one_line_and_exit_1(database_url: str) -> None:
    """The sls dialect over a plain PostgreSQL (a wrong STATS_DIALECT) is refused by the store:
    a person reads one line naming the likely cause, not a traceback."""
    answer = query(database_url, "daily-runs", "--tenant", T, "--app", A, STATS_DIALECT="sls")
    assert answer.returncode == 1, answer.stderr
    last = answer.stderr.strip().splitlines()[-1]
    assert last.startswith("dify-stats: backend_failed: ") and "STATS_DIALECT" in last
    assert "Traceback" not in answer.stderr and all(
        line.startswith("dify-stats: ") for line in answer.stderr.strip().splitlines()
    )


def test_a_reader_that_leaves_early_is_no_error(database_url: str) -> None:
    """`query ... | head -1` on a long table: the pipe closes before the table is written (here
    `true`, which leaves at once); nothing on stderr, and success."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("STATS_", "ALIYUN_"))}
    env.update(STATS_DATABASE_URL=database_url)
    command = f"{sys.executable} -m app query daily-runs --tenant {T} --app {A} --start 2000-01-01 | true"
    done = subprocess.run(  # noqa: S603 - our own fixed command line, to get a real closed pipe
        ["/bin/bash", "-o", "pipefail", "-c", command],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
