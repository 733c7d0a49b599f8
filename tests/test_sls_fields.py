"""SLS answers NULL, silently, for a field whose index has analytics turned off: a misconfigured
logstore would give zeros, not an error. The start-up check and /readyz count the values of every
field the service needs over recent writes and name the one that has none."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.demo import copy_rows, generate_rows
from app.stores.readiness import SourceProblem, check_url
from tests.processes import ROOT, cli_env
from tests.sls_standin import SlsStandIn


@pytest.fixture
def recent(pg_conn: psycopg.Connection[Any], sls_standin: SlsStandIn) -> Iterator[psycopg.Connection[Any]]:
    """A demo history whose every version was written a minute ago."""
    pg_conn.execute("TRUNCATE workflow_execution")
    copy_rows(pg_conn, generate_rows(60, days=1))
    pg_conn.execute(f"UPDATE workflow_execution SET __time__ = {int(time.time()) - 60}")  # type: ignore[arg-type]
    sls_standin.counters.reset()
    yield pg_conn
    pg_conn.execute("TRUNCATE workflow_execution")


def _check(url: str) -> None:
    asyncio.run(check_url("logstore", url, 5, "sls"))


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        ("created_by = ''", "created_by"),
        ("triggered_from = ''", "triggered_from"),
        ("finished_at = '' WHERE finished_at <> ''", "finished_at"),
    ],
)
def test_a_field_without_values_is_named(
    recent: psycopg.Connection[Any], sls_standin: SlsStandIn, broken: str, field: str
) -> None:
    _check(sls_standin.url)
    recent.execute(f"UPDATE workflow_execution SET {broken}")  # type: ignore[arg-type]
    with pytest.raises(SourceProblem, match=f"field {field} reads as NULL .* turn on analytics"):
        _check(sls_standin.url)
    assert sls_standin.counters["refused_statement"] == sls_standin.counters["default_limit_appended"] == 0


def test_without_recent_writes_there_is_nothing_to_judge(
    recent: psycopg.Connection[Any], sls_standin: SlsStandIn
) -> None:
    recent.execute("UPDATE workflow_execution SET created_by = ''")
    recent.execute(f"UPDATE workflow_execution SET __time__ = {int(time.time()) - 30 * 86_400}")  # type: ignore[arg-type]
    _check(sls_standin.url)  # a month old: outside the week the start-up check looks back


def test_readyz_names_the_field_and_serve_refuses_to_start(
    recent: psycopg.Connection[Any], sls_standin: SlsStandIn, tmp_path: Path
) -> None:
    from litestar.testing import TestClient

    from app.config import load_settings
    from app.main import create_app
    from app.stores.backend import Backend

    recent.execute("UPDATE workflow_execution SET status = ''")
    settings = load_settings({"STATS_DATABASE_URL": sls_standin.url, "STATS_DIALECT": "sls"})
    with TestClient(app=create_app(settings, Backend(sls_standin.url, settings))) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503 and "field status reads as NULL" in answer.json()["reason"]

    env = cli_env(tmp_path, STATS_DATABASE_URL=sls_standin.url, STATS_DIALECT="sls")
    done = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", "1"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    problem = [line for line in done.stderr.splitlines() if "configuration error" in line]
    assert len(problem) == 1 and "field status reads as NULL" in problem[0], done.stderr
