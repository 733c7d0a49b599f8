"""`python -m app serve` as an operator meets it: signals stop everything it started, a killed
run is recovered, bad sources and a taken port stop it at once with one line, it says what runs
once it listens, and it refuses connections beyond its cap instead of queueing them."""

from __future__ import annotations

import json
import resource
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from app import __version__
from tests.live import free_port, wait_until_answering
from tests.processes import ROOT, cli_env, postgres_serving, service

SECRET = "hunter2-not-for-logs"


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An embedded data directory with a small demo (so serve starts in a second or two)."""
    home = tmp_path_factory.mktemp("embedded")
    env = cli_env(home)
    loaded = subprocess.run(
        [sys.executable, "-m", "app", "demo-data", "--runs", "300", "--days", "20"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert not postgres_serving(env["STATS_DATA_DIR"]), "demo-data left its PostgreSQL running"
    return env


def json_or_human(line: str) -> bool:
    """Every stderr line is a JSON log line, except the CLI's own `dify-stats:` messages."""
    if line.startswith(("dify-stats:", "  curl ")):
        return True
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_signals_stop_the_embedded_postgres_and_a_killed_run_is_recovered(demo_env: dict[str, str]) -> None:
    data_dir = demo_env["STATS_DATA_DIR"]
    with service(demo_env) as running:
        started = json.loads(running.wait_for_line('"service_started"', 90))
        try_line = running.wait_for_line("  curl ", 10)
        # The demo's curl line comes once the port is open: it answers at once.
        url = try_line.split("'")[1]
        assert url.startswith(running.base) and httpx.get(url, timeout=10).status_code == 200
        assert started["address"] == running.base and started["embedded"] is True
        assert started["version"] == __version__
        assert httpx.get(f"{running.base}/healthz", timeout=10).json()["version"] == __version__
        assert started["console_drop_in"].startswith("off") and started["auth"] == "off"
        assert started["sources"][0]["dialect"] == "postgres" and started["sources"][0]["plan"] == "shortcut"
        assert postgres_serving(data_dir)
        assert running.stop(signal.SIGTERM) == -signal.SIGTERM
        assert all(json_or_human(line) for line in running.lines), running.lines
        stopped = json.loads(running.wait_for_line('"service_stopped"', 1))
        assert stopped["signal"] == "SIGTERM" and stopped["served_s"] >= 0
        # pgserver's import warns when XDG_RUNTIME_DIR is unset (as here): noise, not a problem
        assert not any("XDG_RUNTIME_DIR" in line or '"warning"' in line for line in running.lines)
    assert not postgres_serving(data_dir), "SIGTERM left the embedded PostgreSQL running"

    with service(demo_env) as killed:
        wait_until_answering(f"{killed.base}/readyz", 90, killed.process)
        assert killed.stop(signal.SIGKILL) == -signal.SIGKILL
    assert postgres_serving(data_dir)  # nothing ran to stop it: the next start must cope

    with service(demo_env) as recovered:
        wait_until_answering(f"{recovered.base}/readyz", 90, recovered.process)
        assert httpx.get(f"{recovered.base}/readyz", timeout=10).status_code == 200
        assert recovered.stop(signal.SIGINT) == -signal.SIGINT
    assert not postgres_serving(data_dir), "the stale handle of the killed run kept PostgreSQL running"


def test_the_cli_prints_its_answer_and_logs_only_when_asked(demo_env: dict[str, str]) -> None:
    """No JSON log lines, nor pgserver's warning, from a command a person runs; --verbose adds
    plain lines."""
    from app.demo import demo_apps

    app = demo_apps()[0]

    def query(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "app", "query", "runs-count", "--tenant", app.tenant_id,
             "--app", app.app_id, *extra],
            cwd=ROOT, env=demo_env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    quiet, told = query(), query("--verbose")
    assert (quiet.returncode, quiet.stderr) == (0, ""), quiet.stderr
    assert quiet.stdout.startswith("status") and told.stdout == quiet.stdout
    reused = f"dify-stats: info: embedded_data_reused (data_dir={demo_env['STATS_DATA_DIR']})"
    assert told.stderr.splitlines() == [reused]


def test_the_try_line_carries_the_authorization_header_when_keys_are_set(demo_env: dict[str, str]) -> None:
    key = "a-key-for-the-try-line-01"
    with service({**demo_env, "STATS_API_KEYS": f"{key}=*"}) as running:
        try_line = running.wait_for_line("  curl ", 90).strip()
        assert try_line.startswith("curl -H 'Authorization: Bearer <key>' '"), try_line
        url = try_line.split("'")[3]
        assert httpx.get(url, timeout=10).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 200
        assert running.stop(signal.SIGTERM) == -signal.SIGTERM


def test_load_runs_in_a_data_directory_of_its_own() -> None:
    """`make load` stops the embedded PostgreSQL in its outage part: not the one `make run` serves."""
    from bench import load

    env = load.service_env(8000)
    assert Path(env["STATS_DATA_DIR"]) == load.LOAD_DATA_DIR
    assert load.LOAD_DATA_DIR.resolve() != (ROOT / ".stats-data").resolve()
    assert not any(name.startswith("ALIYUN_SLS_") or name == "STATS_DATABASE_URL" for name in env)


def test_commands_the_cli_prints_run_as_printed(tmp_path: Path) -> None:
    """The CLI names its own interpreter in the commands it prints (a bare `python -m app` needs
    the venv activated): from the working directory it ran in, they run as they are."""
    from app.cli import this_command

    assert this_command().startswith(".venv/bin/python -m app") or not sys.executable.startswith(str(ROOT))
    done = subprocess.run(  # noqa: S603 - our own CLI, through the shell as a person would paste it
        ["/bin/bash", "-c", f"cd {shlex.quote(str(Path.cwd()))} && {this_command()} --version"],
        env=cli_env(tmp_path), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, f"dify-stats {__version__}\n"), done.stderr


def test_version(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "--version"], cwd=ROOT, env=cli_env(tmp_path),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, f"dify-stats {__version__}\n", "")
    assert __version__ == metadata.version("dify-stats") != "0+unknown"


def test_a_signal_while_waiting_for_a_source_ends_serve_at_once(database_url: str, tmp_path: Path) -> None:
    """A Dify database that never answers, a long --wait, and the operator gives up: TERM."""
    env = cli_env(
        tmp_path,
        STATS_DATABASE_URL=database_url,
        STATS_DIFY_DATABASE_URL=f"postgresql://u:{SECRET}@127.0.0.1:{free_port()}/dify",
        STATS_LOGSTORE_SINCE="2026-01-01T00:00:00+00:00",
    )
    with service(env, "--wait", "600") as waiting:
        line = json.loads(waiting.wait_for_line("waiting_for_source", 60))
        assert "workflow_runs" in line["problem"] and "u:***@" in line["problem"]
        started = time.monotonic()
        assert waiting.stop(signal.SIGTERM) == -signal.SIGTERM
        assert time.monotonic() - started < 5
    assert not any(SECRET in line for line in waiting.lines)


@pytest.fixture
def admin(pg_server: Any) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        yield conn


def fresh_database(admin: psycopg.Connection[Any], pg_server: Any, name: str) -> str:
    admin.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.execute(f"CREATE DATABASE {name}")
    url: str = pg_server.get_uri(name)
    return url.replace("postgres:@", f"postgres:{SECRET}@", 1)  # trust auth ignores it; logs must too


def run_serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "app", "serve", "--port", str(free_port()), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def assert_one_line_exit_2(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, done.stderr
    problem = [line for line in done.stderr.splitlines() if line.startswith("dify-stats:")]
    assert len(problem) == 1, done.stderr
    for needle in needles:
        assert needle in problem[0], problem[0]
    assert "Traceback" not in done.stderr and SECRET not in done.stderr


def test_bad_sources_stop_serve_with_one_line_naming_the_problem(
    admin: psycopg.Connection[Any], pg_server: Any, tmp_path: Path
) -> None:
    unreachable = f"postgresql://u:{SECRET}@127.0.0.1:{free_port()}/nothing"
    assert_one_line_exit_2(
        run_serve(cli_env(tmp_path, STATS_DATABASE_URL=unreachable)),
        "logstore", "u:***@", "cannot connect", "set STATS_STARTUP_WAIT",
    )  # fmt: skip

    empty = fresh_database(admin, pg_server, "ops_empty")
    assert_one_line_exit_2(
        run_serve(cli_env(tmp_path, STATS_DATABASE_URL=empty)), "table workflow_execution not found"
    )
    assert_one_line_exit_2(
        run_serve(cli_env(tmp_path, STATS_DIFY_DATABASE_URL=empty)), "table workflow_runs not found"
    )

    with psycopg.connect(empty, autocommit=True) as conn:
        conn.execute((ROOT / "queries" / "schema.sql").read_text())
        conn.execute("ALTER TABLE workflow_execution DROP COLUMN total_tokens CASCADE")
    assert_one_line_exit_2(
        run_serve(cli_env(tmp_path, STATS_DATABASE_URL=empty)), "workflow_execution", "total_tokens"
    )


def test_wait_retries_until_the_store_has_its_table(
    admin: psycopg.Connection[Any], pg_server: Any, tmp_path: Path
) -> None:
    late = fresh_database(admin, pg_server, "ops_late")
    env = cli_env(tmp_path, STATS_DATABASE_URL=late, STATS_STARTUP_WAIT="60")
    with service(env) as waiting:
        waiting.wait_for_line("waiting_for_source", 60)
        assert waiting.process.poll() is None
        with psycopg.connect(late, autocommit=True) as conn:
            conn.execute((ROOT / "queries" / "schema.sql").read_text())
        wait_until_answering(f"{waiting.base}/readyz", 60, waiting.process)
        assert httpx.get(f"{waiting.base}/readyz", timeout=10).status_code == 200
        assert waiting.stop(signal.SIGTERM) == -signal.SIGTERM
    assert not any(SECRET in line for line in waiting.lines)

    done = run_serve(
        cli_env(tmp_path, STATS_DATABASE_URL=f"postgresql://127.0.0.1:{free_port()}/x"), "--wait", "2"
    )
    assert_one_line_exit_2(done, "cannot connect")
    assert sum("waiting_for_source" in line for line in done.stderr.splitlines()) >= 1


def test_a_port_in_use_is_one_line_and_exit_2(database_url: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            cwd=ROOT, env=cli_env(tmp_path, STATS_DATABASE_URL=database_url),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert_one_line_exit_2(done, f"cannot listen on 127.0.0.1:{port}")


def test_connections_beyond_the_cap_get_503_at_once(database_url: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path, STATS_DATABASE_URL=database_url, STATS_MAX_CONNECTIONS="2")
    with service(env) as running:
        wait_until_answering(f"{running.base}/healthz", 60, running.process)
        held = [socket.create_connection(("127.0.0.1", running.port), timeout=5) for _ in range(2)]
        try:
            time.sleep(0.3)  # both accepted
            started = time.monotonic()
            answer = httpx.get(f"{running.base}/healthz", timeout=10)
            assert answer.status_code == 503 and time.monotonic() - started < 5
        finally:
            for connection in held:
                connection.close()
        deadline = time.monotonic() + 10
        while httpx.get(f"{running.base}/healthz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the cap did not free up when connections closed"
            time.sleep(0.1)


def test_readyz_checks_the_table_and_columns_not_only_the_connection(
    admin: psycopg.Connection[Any], pg_server: Any
) -> None:
    from litestar.testing import TestClient

    from app.config import load_settings
    from app.main import create_app
    from app.stores.backend import Backend

    url = fresh_database(admin, pg_server, "ops_ready")
    settings = load_settings({"STATS_DATABASE_URL": url})
    with TestClient(app=create_app(settings, Backend(url, settings))) as client:
        missing_table = client.get("/readyz")
        assert missing_table.status_code == 503
        assert "workflow_execution not found" in missing_table.json()["reason"]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute((ROOT / "queries" / "schema.sql").read_text())
            conn.execute("ALTER TABLE workflow_execution DROP COLUMN created_by CASCADE")
        missing_column = client.get("/readyz")
        assert missing_column.status_code == 503 and "created_by" in missing_column.json()["reason"]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE workflow_execution ADD COLUMN created_by text NOT NULL DEFAULT ''")
        assert client.get("/readyz").json()["status"] == "ok"
        assert SECRET not in missing_table.text + missing_column.text


def test_the_probe_reads_one_row_by_a_time_condition_as_sls_requires() -> None:
    from app.stores.readiness import probe
    from queries.literals import with_literals

    on_postgres = probe("logstore", "postgres").sql
    assert "FROM workflow_execution WHERE __time__ > 0 LIMIT 1" in on_postgres
    on_sls = with_literals(probe("logstore", "sls"))  # a recent hour, not the whole logstore
    since = int(on_sls.rsplit(">= ", 1)[1].split()[0])
    assert "FROM workflow_execution WHERE __time__ >= " in on_sls and on_sls.endswith(" LIMIT 1")
    assert 3_590 <= time.time() - since <= 3_610
    assert probe("workflow_runs", "sls").sql.endswith("FROM workflow_runs LIMIT 1")
    for column in ("__time__", "id", "log_version", "status", "total_tokens", "created_by", "finished_at"):
        assert f" {column}," in on_postgres or f" {column} " in on_postgres


def test_console_paths_without_dify_say_which_variable_turns_them_on(client: Any) -> None:
    answer = client.get(
        "/console/api/apps/8483f8b8-332d-4331-ba0b-9965cda6c6fd/workflow-runs/count",
        headers={"Cookie": "session=x"},
    )
    assert answer.status_code == 503
    assert "DIFY_CONSOLE_API_URL" in answer.json()["message"]


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux's prlimit")
def test_running_out_of_file_descriptors_does_not_flood_stderr(database_url: str, tmp_path: Path) -> None:
    """With its descriptors used up, every accept() fails and asyncio logs each failure (tens of
    thousands of lines a second, measured); the log keeps a few, and the service recovers."""
    with service(cli_env(tmp_path, STATS_DATABASE_URL=database_url)) as running:
        wait_until_answering(f"{running.base}/readyz", 60, running.process)
        before = len(running.lines)
        soft, hard = resource.prlimit(running.process.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(running.process.pid, resource.RLIMIT_NOFILE, (40, hard))
        clients = []
        try:
            for _ in range(120):
                clients.append(socket.create_connection(("127.0.0.1", running.port), timeout=5))
            running.wait_for_line("out of system resource", 10)
            time.sleep(3)
        finally:
            for connection in clients:
                connection.close()
        flood = [line for line in running.lines[before:] if "out of system resource" in line]
        assert 1 <= len(flood) <= 3, len(flood)
        resource.prlimit(running.process.pid, resource.RLIMIT_NOFILE, (soft, hard))
        wait_until_answering(f"{running.base}/healthz", 20, running.process)
        assert httpx.get(f"{running.base}/healthz", timeout=10).status_code == 200
        assert running.stop(signal.SIGTERM) == -signal.SIGTERM
    assert len(running.lines) - before < 30, running.lines[before:]


def test_an_embedded_postgres_that_cannot_start_is_one_line(tmp_path: Path) -> None:
    """PostgreSQL needs more file descriptors than this limit allows, so pg_ctl fails."""

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (60, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    done = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "app", "serve", "--port", str(free_port())],
        cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True, timeout=120, check=False,
        preexec_fn=few_descriptors,
    )  # fmt: skip
    assert_one_line_exit_2(
        done, "embedded PostgreSQL", "did not start", str(tmp_path / "data" / "pg" / "log")
    )
    assert not postgres_serving(tmp_path)


def test_idle_connections_close_and_oversized_request_heads_are_refused(
    database_url: str, tmp_path: Path
) -> None:
    from app.http.protocol import MAX_HEADER_BYTES
    from app.http.server import KEEP_ALIVE_SECONDS

    with service(cli_env(tmp_path, STATS_DATABASE_URL=database_url)) as running:
        wait_until_answering(f"{running.base}/healthz", 60, running.process)
        with socket.create_connection(("127.0.0.1", running.port), timeout=KEEP_ALIVE_SECONDS + 5) as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while not received.endswith(b"}"):  # head and body may come apart
                chunk = idle.recv(4096)
                assert chunk, received
                received += chunk
            assert received.startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert idle.recv(4096) == b""  # closed by the server, not by this timeout
            assert KEEP_ALIVE_SECONDS - 1 < time.monotonic() - started < KEEP_ALIVE_SECONDS + 3
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as greedy:
            greedy.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 1024))
            answer = greedy.recv(4096)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


def _closed_by_the_server(connection: socket.socket, within: float) -> bytes:
    """What the server sent before closing the connection, which it must do within `within` s."""
    connection.settimeout(within)
    received = b""
    while chunk := connection.recv(4096):
        received += chunk
    return received


def test_clients_that_do_not_finish_their_request_head_are_closed(database_url: str, tmp_path: Path) -> None:
    """A client sending half a request line (or nothing, or one byte at a time) held its
    connection forever, so a few of them locked everyone else out at STATS_MAX_CONNECTIONS. After
    STATS_HEADER_TIMEOUT they get a 408 and the connection closes."""
    env = cli_env(tmp_path, STATS_DATABASE_URL=database_url, STATS_HEADER_TIMEOUT="1",
                  STATS_MAX_CONNECTIONS="8")  # fmt: skip
    with service(env) as running:
        wait_until_answering(f"{running.base}/healthz", 60, running.process)
        address = ("127.0.0.1", running.port)
        slow = [socket.create_connection(address, timeout=5) for _ in range(8)]
        try:
            for connection in slow[:6]:
                connection.sendall(b"GET /healthz HT")  # half a request line
            slow[6].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # a head without its end
            time.sleep(0.3)
            held = httpx.get(f"{running.base}/healthz", timeout=5)  # all held
            assert (held.status_code, held.json()["code"], held.headers["retry-after"]) == (
                503,
                "overloaded",
                "1",
            )
            assert "STATS_MAX_CONNECTIONS" in held.json()["message"]
            for connection in slow:  # slow[7] has sent nothing at all
                assert _closed_by_the_server(connection, 3).startswith(b"HTTP/1.1 408 "), connection
            assert httpx.get(f"{running.base}/healthz", timeout=5).status_code == 200
        finally:
            for connection in slow:
                connection.close()

        with socket.create_connection(address, timeout=5) as trickle:  # active, but never done
            started, closed_after = time.monotonic(), None
            for byte in (b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 40)[:60]:  # 6 s at most
                trickle.sendall(bytes([byte]))
                if select.select([trickle], [], [], 0.1)[0]:  # the server answered: it is closing
                    assert _closed_by_the_server(trickle, 3).startswith(b"HTTP/1.1 408 ")
                    closed_after = time.monotonic() - started
                    break
            assert closed_after is not None and closed_after < 3

        with socket.create_connection(address, timeout=5) as kept:  # kept alive, then slow
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}"):  # head and body may come apart
                answer += kept.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
            kept.sendall(b"GET /healthz HT")
            assert _closed_by_the_server(kept, 3).startswith(b"HTTP/1.1 408 ")
