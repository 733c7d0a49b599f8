"""`python -m app serve|demo-data|check-sls|query`."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import structlog

from app import __version__
from app.config import ConfigError, Settings, load_settings, parse_instant
from app.query_cli import add_query_parser, run_query

log = structlog.get_logger("dify_stats.cli")


class _OneLineErrors(argparse.ArgumentParser):
    """A bad command line is one line and exit 2, like every other error of the CLI (`--help`
    still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"dify-stats: {self.prog}: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _OneLineErrors(prog="python -m app", description="dify-stats: statistics of Dify workflow runs")
    parser.add_argument("--version", action="version", version=f"dify-stats {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineErrors)
    serve = commands.add_parser("serve", help="start the HTTP service")
    serve.add_argument("--host", help="listen address (STATS_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (STATS_PORT, default 8000)")
    serve.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to this long for the databases to answer (STATS_STARTUP_WAIT, default 0)",
    )
    # A command other than serve speaks to a person: warnings as plain lines, its logs on request.
    verbose = _OneLineErrors(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", help="also print what it does (log lines)")
    demo = commands.add_parser(
        "demo-data", parents=[verbose], help="load a generated demo history (COPY) into the database"
    )
    demo.add_argument("--runs", type=int, default=20_000, help="number of runs (default 20000)")
    demo.add_argument("--days", type=int, default=90, help="days of history up to now (default 90)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument("--replace", action="store_true", help="empty the tables first")
    demo.add_argument(
        "--split-at",
        type=_instant,
        metavar="INSTANT",
        help="load it as a migrating deployment holds it: Dify's workflow_runs plus the LogStore "
        "from this ISO-8601 instant on (serve with STATS_LOGSTORE_SINCE set to it)",
    )
    commands.add_parser(
        "check-sls",
        parents=[verbose],
        help="run every sls-dialect query once against SLS (needs ALIYUN_SLS_*)",
    )
    add_query_parser(commands, parents=[verbose])
    args = parser.parse_args(argv)

    from app.http.server import Interrupted, end_by_signal
    from app.logging import configure_logging

    try:
        settings = load_settings(host=getattr(args, "host", None), port=getattr(args, "port", None))
        if args.command == "serve":
            configure_logging(settings.log_level)
        else:
            level = ("debug" if settings.log_level == "debug" else "info") if args.verbose else "warning"
            configure_logging(level, plain=True)
        return _run(args, settings)
    except ConfigError as error:  # settings, a source that is not usable, a port in use
        print(f"dify-stats: configuration error: {error}", file=sys.stderr)
        return 2
    except Interrupted as stop:  # every clean-up has run; end as the signal asks
        end_by_signal(stop.signum)
        return 128 + stop.signum


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        return _serve(settings, args.wait)
    if args.command == "query":
        return run_query(args, settings)
    if args.command == "demo-data":
        return _demo_data(settings, args.runs, args.days, args.seed, args.replace, args.split_at)
    from app.live_check import check_sls

    return check_sls(settings)


def _instant(text: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _database_url(settings: Settings, *, demo: bool = True) -> tuple[str, Any]:
    """The LogStore's URL, or the embedded server's (started here) when no database is
    configured. Empty when Dify's workflow_runs is the only source."""
    if settings.database_url or settings.dify_database_url:
        return settings.database_url or "", None
    from app.embedded import DEMO_RUNS, start_embedded

    server, url = start_embedded(
        settings.data_dir, demo_runs=DEMO_RUNS if demo else 0, split_at=settings.logstore_since
    )
    return url, server


def _serve(settings: Settings, wait: float | None) -> int:
    """Start the embedded server if needed, check every source, bind the port, serve; the
    embedded server is stopped however this ends (signal, bad source, port in use)."""
    from app.embedded import stop_embedded
    from app.http.server import SignalGuard, address, listen, serve
    from app.main import create_app
    from app.startup import announce, check_node_logstore, check_sources, source_urls, started_line
    from app.stores.backend import Backend

    guard = SignalGuard()
    guard.install()
    server = None
    started: list[float] = []
    try:
        with guard.deferred():
            url, server = _database_url(settings)
        urls = source_urls(settings, url)
        check_sources(settings, urls, settings.startup_wait if wait is None else wait)
        node_logstore = check_node_logstore(settings, url)
        demo_hint = _demo_hint(url, settings) if server is not None else None
        sock = listen(settings.host, settings.port)
        logstore = Backend(url, settings) if url else None
        workflow_runs = (
            Backend(urls["workflow_runs"], settings, dialect="postgres", name="workflow_runs")
            if "workflow_runs" in urls
            else None
        )

        def on_started() -> None:
            started.append(time.monotonic())
            fields = started_line(settings, urls, address(sock))
            if node_logstore is not None:
                fields["node_logstore"] = node_logstore.state
            announce(fields)
            if demo_hint:
                print(demo_hint.replace(_BASE_PLACEHOLDER, address(sock)), file=sys.stderr, flush=True)

        with guard.deferred():
            serve(create_app(settings, logstore, workflow_runs, node_logstore), sock, settings, on_started)
    finally:
        if server is not None:
            stop_embedded(server)
        if started:  # the line that matches the start-up line, once everything has stopped
            cause = signal.Signals(guard.received).name if guard.received is not None else None
            log.info("service_stopped", signal=cause, served_s=round(time.monotonic() - started[0], 1))
    return 0


_BASE_PLACEHOLDER = "{base}"


def _demo_hint(url: str, settings: Settings) -> str | None:
    """The embedded demo's "Try: curl ..." line (printed once the port is open), after a
    warning printed now if a split demo lacks its workflow_runs side."""
    from app.embedded import busiest_app

    since = settings.logstore_since.isoformat() if settings.logstore_since is not None else None
    with psycopg.connect(url) as conn:
        found = busiest_app(conn)
        split_but_empty = (
            since is not None and conn.execute("SELECT 1 FROM workflow_runs LIMIT 1").fetchone() is None
        )
    if split_but_empty:
        print(
            "dify-stats: STATS_LOGSTORE_SINCE is set but the embedded workflow_runs is empty, so runs "
            "before it are missing. Load a split demo first:\n"
            f"  {this_command()} demo-data --replace --split-at {since}",
            file=sys.stderr,
            flush=True,
        )
    if not found:
        return None
    tenant_id, app_id = found
    route = f"{_BASE_PLACEHOLDER}/v1/tenants/{tenant_id}/apps/{app_id}/statistics/daily-runs"
    split = f" (workflow_runs before {since}, the LogStore from then on)" if since is not None else ""
    key = " -H 'Authorization: Bearer <key>'" if settings.auth else ""  # one of STATS_API_KEYS
    return f"dify-stats: embedded demo data ready{split}. Try:\n  curl{key} '{route}?timezone=Asia/Shanghai'"


def this_command() -> str:
    """How to run this CLI again as it was run now (the project's venv need not be active):
    its interpreter, relative to the working directory when inside it."""
    interpreter = Path(sys.executable)
    with suppress(ValueError):
        interpreter = interpreter.relative_to(Path.cwd())
    return f"{shlex.quote(str(interpreter))} -m app"


def _demo_data(
    settings: Settings, runs: int, days: int, seed: int, replace: bool, split_at: datetime | None
) -> int:
    from app.demo import generate_rows
    from app.embedded import ensure_schema, load_demo

    if settings.dialect == "sls":
        print("dify-stats: demo-data writes with COPY; SLS is read-only here", file=sys.stderr)
        return 2
    if settings.dify_database_url:
        print(
            "dify-stats: demo-data never writes into Dify's database; unset STATS_DIFY_DATABASE_URL",
            file=sys.stderr,
        )
        return 2
    url, _server = _database_url(settings, demo=False)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        if replace:
            conn.execute(
                "TRUNCATE workflow_execution, workflow_runs, workflow_node_execution, "
                "workflow_node_executions, accounts, end_users, messages"
            )
        rows = load_demo(conn, generate_rows(runs, days=days, seed=seed), split_at)
    print(
        f"loaded {runs} runs ({rows} LogStore rows) in {time.perf_counter() - started:.1f} s", file=sys.stderr
    )
    if split_at is not None:
        print(
            "dify-stats: split demo loaded (workflow_runs + LogStore). Serve it as a migrating deployment:\n"
            + ("  STATS_DIFY_DATABASE_URL=<the same database URL> " if settings.database_url else "  ")
            + f"STATS_LOGSTORE_SINCE={split_at.isoformat()} make run",
            file=sys.stderr,
        )
    return 0
