"""One log format: the service's own lines and those of uvicorn, httpx, psycopg_pool and asyncio
are JSON through the same handler, URL passwords hidden, bursts of one error line thinned."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest
import structlog

from app.logging import RepeatFilter, configure_logging, redact_credentials


def lines(captured: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in captured.splitlines() if line.strip()]


def test_every_library_writes_json_with_url_passwords_hidden(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug")  # httpx's lines are written only then
    structlog.get_logger("dify_stats.test").info("ours", url="postgresql://ak:sk-secret-1@h:5432/p")
    logging.getLogger("httpx").info("HTTP Request: GET %s", "http://admin:sk-secret-2@dify:5001/console/api")
    logging.getLogger("psycopg.pool").warning("error connecting to postgresql://u:sk-secret-3@db/x")
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    captured = capsys.readouterr().err
    assert "sk-secret" not in captured
    logged = lines(captured)
    assert [line["event"] for line in logged] == [
        "ours",
        "HTTP Request: GET http://admin:***@dify:5001/console/api",
        "error connecting to postgresql://u:***@db/x",
        "Invalid HTTP request received.",
    ]
    assert logged[0]["url"] == "postgresql://ak:***@h:5432/p"
    assert [line.get("logger") for line in logged[1:]] == ["httpx", "psycopg.pool", "uvicorn.error"]
    assert all("timestamp" in line and "level" in line for line in logged)


def test_a_password_in_a_urls_query_is_hidden_too() -> None:
    line = 'connecting to "postgresql://u@db/x?sslpassword=k1&sslmode=require&password=p%40ss" failed'
    assert redact_credentials(line) == (
        'connecting to "postgresql://u@db/x?sslpassword=***&sslmode=require&password=***" failed'
    )
    assert redact_credentials("redis://h:6379/0?password=pw&db=5") == "redis://h:6379/0?password=***&db=5"


def test_redaction_keeps_urls_without_credentials_intact() -> None:
    for plain in ("http://host:8000/path?x=a@b", "postgresql://u@h/db", "see http://a/b:c@d"):
        assert redact_credentials(plain) == plain
    assert redact_credentials("x postgresql://u:p%40ss@h:1/d y") == "x postgresql://u:***@h:1/d y"


def test_a_burst_of_one_accept_error_is_written_once_with_a_count(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    flood = logging.getLogger("asyncio")
    for _ in range(5000):
        flood.error("socket.accept() out of system resource: [Errno 24] Too many open files")
    for n in range(5000):  # asyncio's retry timer: the same line but for its due time
        flood.error("Exception in callback _start_serving handle: <TimerHandle when=%s>", 771.5 + n / 7)
    logging.getLogger("uvicorn.error").error("another problem")
    logged = lines(capsys.readouterr().err)
    assert [line["event"] for line in logged] == [
        "socket.accept() out of system resource: [Errno 24] Too many open files",
        "Exception in callback _start_serving handle: <TimerHandle when=771.5>",
        "another problem",
    ]


def test_the_repeat_filter_lets_a_line_through_again_after_its_interval_with_the_count() -> None:
    thinning = RepeatFilter(interval=0.2)
    record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Too many open files", None, None)
    assert thinning.filter(record)
    assert [thinning.filter(record) for _ in range(3)] == [False, False, False]
    time.sleep(0.25)
    again = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Too many open files", None, None)
    assert thinning.filter(again) and again.repeated == 3


def test_httpxs_line_per_call_to_dify_is_written_only_when_debugging(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200)))
    for level, written in (("info", False), ("debug", True)):
        configure_logging(level)
        client.get("http://dify:5001/console/api/workspaces/current")
        from_httpx = [line for line in lines(capsys.readouterr().err) if line.get("logger") == "httpx"]
        assert bool(from_httpx) == written, level
    configure_logging("info")


def test_the_cli_writes_one_plain_line_per_problem(capsys: pytest.CaptureFixture[str]) -> None:
    """A command other than serve speaks to a person: no JSON, no timestamps, one line each."""
    configure_logging("warning", plain=True)
    log = structlog.get_logger("dify_stats.repository")
    log.info("embedded_data_reused", data_dir="/somewhere")  # only with --verbose
    log.warning("runs_skipped_unparsable_created_time", runs=3, url="postgresql://u:sk-secret@h/db")
    logging.getLogger("py.warnings").warning("lib.py:7: UserWarning: a library's warning\n  warn(...)\n")
    assert capsys.readouterr().err.splitlines() == [
        "dify-stats: warning: runs_skipped_unparsable_created_time (runs=3, url=postgresql://u:***@h/db)",
        "dify-stats: warning: lib.py:7: UserWarning: a library's warning",
    ]
    configure_logging("info")
