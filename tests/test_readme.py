"""The README's curl examples, run as written (their shell lines through bash, dates included)
against the service over a demo history ending today, with the placeholders filled in."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from app.config import load_settings
from app.demo import copy_rows, generate_rows
from app.embedded import busiest_app
from app.main import create_app
from app.stores.backend import Backend
from tests.live import serve

ROOT = Path(__file__).resolve().parents[1]
KEY = "readme-example-key-0001"
README_BASE = "http://127.0.0.1:8000"


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)


def curl_examples() -> tuple[list[str], list[str]]:
    """(the lines that set variables, the curl lines) of the README's native API examples."""
    (block,) = [block for block in shell_blocks() if f"B={README_BASE}/v1/tenants/" in block]
    lines = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    return [line for line in lines if not line.startswith("curl ")], [
        line for line in lines if line.startswith("curl ")
    ]


def expand(setup: list[str], curl_line: str) -> list[str]:
    """The arguments curl would get: the README's own lines run by bash, curl replaced by a
    function printing its arguments (so this runs where curl is not installed)."""
    script = "\n".join(['curl() { printf "%s\\0" "$@"; }', *setup, curl_line])
    done = subprocess.run(  # noqa: S603 - bash on the README's own lines
        ["/bin/bash", "-euo", "pipefail", "-c", script],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\0")[:-1]


def send(arguments: list[str]) -> httpx.Response:
    """The request curl would send; where it would save the body (`-o FILE`, `-OJ`) is left out."""
    headers: dict[str, str] = {}
    words = iter(arguments)
    url = None
    for word in words:
        if word == "-H":
            name, _, value = next(words).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-o":
            next(words)
        elif word == "-OJ":
            continue
        else:
            assert not word.startswith("-"), f"an option the test does not know: {word}"
            url = word
    assert url is not None
    return httpx.get(url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def demo_service(database_url: str) -> Iterator[tuple[str, tuple[str, str]]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE workflow_execution")
        copy_rows(conn, generate_rows(3000))  # the embedded demo's shape: 90 days up to now
        found = busiest_app(conn)
    assert found is not None
    settings = load_settings({"STATS_DATABASE_URL": database_url, "STATS_API_KEYS": f"{KEY}=*"})
    with serve(create_app(settings, Backend(database_url, settings))) as base:
        yield base, found


def _run_page(base: str, tenant: str, app: str, limit: int) -> list[dict[str, Any]]:
    """The newest runs of the demo app, to fill the README's `<run_id>` placeholders."""
    answer = httpx.get(
        f"{base}/v1/tenants/{tenant}/apps/{app}/runs",
        params={"triggered_from": "app-run", "limit": limit},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    return list(answer.json()["data"])


def test_every_curl_example_of_the_readme_answers_200(demo_service: tuple[str, tuple[str, str]]) -> None:
    base, (tenant, app) = demo_service
    setup, curls = curl_examples()
    assert len(curls) >= 8
    page = _run_page(base, tenant, app, 5)
    fill = {
        "<key>": KEY,
        "<tenant>": tenant,
        "<app>": app,
        "<run_id>": page[0]["id"],
        "<last id of the previous page>": page[-1]["id"],
        README_BASE: base,
    }

    def filled(line: str) -> str:
        for placeholder, value in fill.items():
            line = line.replace(placeholder, value)
        assert "<" not in line, f"a placeholder the test does not fill: {line}"
        return line

    setup = [filled(line) for line in setup]
    for line in curls:
        answer = send(expand(setup, filled(line)))
        assert answer.status_code == 200, (line, answer.text)
        if answer.headers["content-type"].startswith("text/csv"):  # a header row, then the data
            assert len(answer.text.splitlines()) > 1, f"no rows in the README's range: {line}"
        elif "/runs/export" in line:
            assert answer.text.splitlines(), f"no runs in the README's range: {line}"
        elif "/statistics/" in line:
            assert answer.json()["data"], f"no days with runs in the README's range: {line}"


def test_readme_shell_blocks_hold_no_fixed_demo_dates() -> None:
    """Dates in commands run against the demo must move with it (the demo covers 90 days up to
    its first start); a fixed date would leave its range within months."""
    for block in shell_blocks():
        if "make run" in block or f"{README_BASE}/v1/" in block or " -m app query " in block:
            assert not re.search(r"\d{4}-\d{2}-\d{2}", block), block


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_curl_lines_are_valid_curl(demo_service: tuple[str, tuple[str, str]]) -> None:
    """One example through the real curl, to show the function used above reads them as curl does."""
    base, (tenant, app) = demo_service
    setup, curls = curl_examples()
    fill = {"<key>": KEY, "<tenant>": tenant, "<app>": app, README_BASE: base}

    def filled(line: str) -> str:
        for placeholder, value in fill.items():
            line = line.replace(placeholder, value)
        return line

    arguments = expand([filled(line) for line in setup], filled(curls[0]))
    done = subprocess.run(  # noqa: S603
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *arguments],  # noqa: S607
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.stdout == "200", shlex.join(arguments)


def test_the_readmes_cli_commands_run_as_printed(
    database_url: str, demo_service: tuple[str, tuple[str, str]]
) -> None:
    """From a clone whose .venv `make` created, without activating it: a bare `python -m app`
    fails there with ModuleNotFoundError, so every command names the project's interpreter."""
    base, (tenant, app) = demo_service
    page = _run_page(base, tenant, app, 1)
    commands = [line for block in shell_blocks() for line in block.splitlines() if " -m app " in f"{line} "]
    assert len(commands) >= 5
    for line in commands:
        assert line.startswith(".venv/bin/python -m app "), line
    # The lines of the query examples' block that set its dates, run before each command.
    (query_block,) = [block for block in shell_blocks() if " -m app query " in block]
    setup = "\n".join(line for line in query_block.splitlines() if re.match(r"[A-Z_]+=", line))
    assert (ROOT / ".venv" / "bin" / "python").exists(), "make creates .venv before it runs the tests"
    env = {name: value for name, value in os.environ.items() if not name.startswith(("STATS_", "ALIYUN_"))}
    env["STATS_DATABASE_URL"] = database_url
    for line in [line for line in commands if " query " in line] + [".venv/bin/python -m app --version"]:
        filled = line.replace("<tenant>", tenant).replace("<app>", app).replace("<run_id>", page[0]["id"])
        done = subprocess.run(  # noqa: S603 - bash on the README's own lines
            ["/bin/bash", "-euo", "pipefail", "-c", f"{setup}\n{filled}"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0 and done.stdout, (line, done.stderr)
