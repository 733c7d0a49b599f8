"""`python -m app query <measure> ...`: one native-API answer printed, without a server.

Reads the store `serve` would read (same settings), builds the request with the API's own
request builders and checks (app/http/routes/requests.py, app/http/params.py), asks the repository
directly (no cache) and prints an aligned table, or with `--format json` (`--json`) the JSON the
API answers, with `--format csv` its CSV. `runs-export` prints what GET .../runs/export streams
(NDJSON, or CSV), a page at a time.
A bad value is the API's 400 message on stderr, exit code 2; an unreachable store, or one that
refuses a statement, one plain line and exit code 1 (an export cut short also ends its output
with the line the API ends it with).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import msgspec

from app.config import Settings
from app.core.measures import DAILY_MEASURES, DailyMeasure
from app.http.params import BadParameter, choice_param, trigger_param, uuid_param, zone_param
from schemas.exports import RunExportRequest
from schemas.requests import STATUSES, CountRequest, DailyRequest, RunDetailRequest, RunStatus

if TYPE_CHECKING:
    from app.stores.sources import Source
    from schemas.runs import RunSummary

# Named as their native paths: /v1/tenants/{tenant_id}/apps/{app_id}/statistics/<name>.
DAILY_BY_PATH: dict[str, DailyMeasure] = {
    measure.native_path.lstrip("/"): measure for measure in DAILY_MEASURES
}
RUNS_COUNT = "runs-count"  # /runs/count
NODE_EXECUTIONS = "node-executions"  # /runs/{run_id}/node-executions
RUNS_EXPORT = "runs-export"  # /runs/export
# The formats each measure prints; the first is the default.
DAILY_FORMATS = ("table", "json", "csv")
ONE_ANSWER_FORMATS = ("table", "json")
EXPORT_FORMATS = ("ndjson", "csv")
Request = DailyRequest | CountRequest | RunDetailRequest | RunExportRequest


def add_query_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The `query` sub-command, on the parser's sub-parsers (with the options of `parents`)."""
    query = commands.add_parser(
        "query",
        parents=parents,
        help="print one statistic of one app from the configured store, without a server",
        description="One answer of the native API, read directly from the configured store "
        "(STATS_DATABASE_URL, ALIYUN_SLS_*, STATS_DIFY_DATABASE_URL, or the embedded default).",
    )
    query.add_argument(
        "measure", choices=[*DAILY_BY_PATH, RUNS_COUNT, NODE_EXECUTIONS, RUNS_EXPORT], help="what to answer"
    )
    query.add_argument("--tenant", required=True, help="tenant (workspace) id")
    query.add_argument("--app", required=True, help="app id")
    query.add_argument("--start", help="ISO-8601 date/date-time or YYYY-MM-DD HH:MM (naive = in --timezone)")
    query.add_argument("--end", help="exclusive; same forms as --start")
    query.add_argument("--timezone", default="UTC", help="IANA zone of the days and naive bounds (UTC)")
    query.add_argument(
        "--triggered-from",
        help="trigger source (default as the API: app-run for daily measures, debugging for runs-count)",
    )
    query.add_argument("--status", help=f"{RUNS_COUNT} and {RUNS_EXPORT}: only runs of this status")
    query.add_argument("--time-range", help=f"{RUNS_COUNT} only: created within 7d, 12h, 30m, 90s before now")
    query.add_argument("--run", help=f"{NODE_EXECUTIONS} only: the run id")
    query.add_argument(
        "--format",
        help="table (default) or json; daily measures also csv; runs-export ndjson (default) or csv",
    )
    query.add_argument("--json", action="store_true", help="print the API's JSON (--format json)")
    query.add_argument(
        "--sql",
        action="store_true",
        help="first print each statement as it is sent (values written in), e.g. to paste into SLS's console",
    )


def run_query(args: argparse.Namespace, settings: Settings) -> int:
    try:
        request = build_request(args, settings)
        output = output_format(args)
    except BadParameter as error:
        print(f"dify-stats: invalid_param: {error}", file=sys.stderr)
        return 2
    from app.stores.backend import BackendFailed, BackendUnavailable, TooManyQueries, statement_echo
    from app.stores.node_logstore import NodeLogstoreAbsent

    if args.sql:
        statement_echo.set(_print_statement)
    try:
        if isinstance(request, RunExportRequest):
            return asyncio.run(_export(settings, request, output))
        answer = asyncio.run(_answer(settings, args.measure, request))
        print(printed(args.measure, answer, output), end="" if output == "csv" else "\n")
    except BadParameter as error:
        print(f"dify-stats: not_found: {error}", file=sys.stderr)
        return 2
    except TooManyQueries as error:
        print(f"dify-stats: too_many_queries: {error}", file=sys.stderr)
        return 2
    except (BackendUnavailable, NodeLogstoreAbsent) as error:
        print(f"dify-stats: backend_unavailable: {error}", file=sys.stderr)
        return 1
    except BackendFailed as error:
        print(
            f"dify-stats: backend_failed: the store refused a statement ({error}); is STATS_DIALECT "
            f"right for it ({settings.dialect} now)? --sql shows what was sent",
            file=sys.stderr,
        )
        return 1
    except BrokenPipeError:  # the reader left early (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


def output_format(args: argparse.Namespace) -> str:
    """`--format`, checked against what the measure prints (`--json` is `--format json`)."""
    allowed: tuple[str, ...] = ONE_ANSWER_FORMATS
    if args.measure == RUNS_EXPORT:
        allowed = EXPORT_FORMATS
    elif args.measure in DAILY_BY_PATH:
        allowed = DAILY_FORMATS
    if args.json:
        if args.format not in (None, "json"):
            raise BadParameter("json", "cannot be combined with another --format")
        args.format = "json"
    return choice_param("format", args.format, allowed) if args.format else allowed[0]


def printed(measure: str, answer: Any, output: str) -> str:
    """The answer as `output` says: the API's JSON, its CSV (a daily measure's), or a table."""
    if output == "json":
        return msgspec.json.encode(answer).decode()
    if output == "csv":
        from app.http.csv import CsvTable

        return CsvTable(DAILY_BY_PATH[measure].point_type).document(answer.data).decode()
    return table(measure, answer)


def _print_statement(source: str, sql: str) -> None:
    print(f"-- {source}\n{sql.strip()};\n", flush=True)


def build_request(args: argparse.Namespace, settings: Settings) -> Request:
    """The request struct the API would build from the same values, with the same checks.

    Path and typed parameters, which litestar checks on the API, are checked here first."""
    from app.http.params import created_range
    from app.http.routes.exports import export_request
    from app.http.routes.requests import count_request, daily_request

    tenant_id = uuid_param("tenant_id", args.tenant)
    app_id = uuid_param("app_id", args.app)
    zone = zone_param("timezone", args.timezone)
    if (args.measure == NODE_EXECUTIONS) != (args.run is not None):
        raise BadParameter("run", f"is needed by {NODE_EXECUTIONS}, and by it only")
    if args.measure == NODE_EXECUTIONS:
        for name in ("start", "end", "triggered_from", "status", "time_range"):
            if getattr(args, name) is not None:
                raise BadParameter(name, f"does not apply to {NODE_EXECUTIONS}")
        return RunDetailRequest(tenant_id=tenant_id, app_id=app_id, run_id=uuid_param("run", args.run))
    status = cast(RunStatus, choice_param("status", args.status, STATUSES)) if args.status else None
    if args.measure in (*DAILY_BY_PATH, RUNS_EXPORT):
        for name in ("status", "time_range") if args.measure != RUNS_EXPORT else ("time_range",):
            if getattr(args, name) is not None:
                raise BadParameter(name, f"applies to {RUNS_COUNT} only")
        trigger = trigger_param("triggered_from", args.triggered_from or "app-run")
        daily = daily_request(
            tenant=tenant_id, zone=zone, daily_trigger=trigger, settings=settings,
            app_id=app_id, start=args.start, end=args.end,
        )  # fmt: skip
        return export_request(daily_request=daily, status=status) if args.measure == RUNS_EXPORT else daily
    trigger = trigger_param("triggered_from", args.triggered_from or "debugging")
    counting = count_request(
        tenant=tenant_id, settings=settings, app_id=app_id, status=status,
        time_range=args.time_range, triggered_from=trigger,
    )  # fmt: skip
    if args.start is None and args.end is None:
        return counting
    if args.time_range is not None:
        raise BadParameter("time_range", "cannot be combined with start or end")
    created = created_range(args.start, args.end, zone, settings.max_range_days)
    return msgspec.structs.replace(counting, start_us=created.start_us, end_us=created.end_us)


@asynccontextmanager
async def _sources(settings: Settings) -> AsyncIterator[tuple[Source, ...]]:
    """The configured sources, their pools opened for the duration."""
    from app.stores.sources import build_sources

    logstore, workflow_runs = _backends(settings)
    sources = build_sources(settings, logstore, workflow_runs)
    for source in sources:
        await source.backend.open()
    try:
        yield sources
    finally:
        for source in sources:
            await source.backend.close()


async def _export(settings: Settings, request: RunExportRequest, output: str) -> int:
    """The export's pages as GET .../runs/export streams them, written as they are read; a failure
    after the first page ends the output with the API's last line, and is on stderr (exit 1)."""
    from app.http.routes.exports import EXPORT_FORMS, error_body
    from app.stores.run_export import RunExport

    form = EXPORT_FORMS[output]
    async with _sources(settings) as sources:
        pages = RunExport(sources).pages(request)
        first: list[RunSummary] = await anext(pages, [])  # nothing printed if the store cannot answer
        sys.stdout.buffer.write(form.start() + form.page(first))
        sys.stdout.flush()
        try:
            async for page in pages:
                sys.stdout.buffer.write(form.page(page))
                sys.stdout.flush()
        except Exception as error:
            sys.stdout.buffer.write(form.incomplete(error_body(error)))
            sys.stdout.flush()
            raise
    return 0


async def _answer(
    settings: Settings, measure: str, request: DailyRequest | CountRequest | RunDetailRequest
) -> Any:
    """The repository's answer over the configured sources, the pools opened and closed here."""
    from app.stores.node_logstore import NodeLogstore
    from app.stores.node_repository import NodeExecutionRepository
    from app.stores.people import PeopleReader
    from app.stores.repository import StatsRepository
    from schemas.statistics import DailyAnswer

    async with _sources(settings) as sources:
        if isinstance(request, RunDetailRequest):
            dify = next((source.backend for source in sources if source.name == "workflow_runs"), None)
            nodes = NodeExecutionRepository(sources, settings, NodeLogstore(), PeopleReader(dify))
            found = await nodes.read(request)
            if found is None:
                raise BadParameter("run", "is not a run of this app")
            return found.answer
        repository = StatsRepository(sources, settings)
        if isinstance(request, CountRequest):
            return await repository.counts(request)
        return DailyAnswer(data=await repository.daily(DAILY_BY_PATH[measure], request))


def _backends(settings: Settings) -> tuple[Any, Any]:
    """(LogStore, workflow_runs) backends as `serve` opens them; the embedded default is started
    if need be, but a query never loads demo data into it."""
    from app.cli import _database_url
    from app.stores.backend import Backend

    url, _server = _database_url(settings, demo=False)
    logstore = Backend(url, settings) if url else None
    dify_url = settings.dify_database_url or (url if settings.two_sources else None)
    workflow_runs = (
        Backend(dify_url, settings, dialect="postgres", name="workflow_runs") if dify_url else None
    )
    return logstore, workflow_runs


def table(measure: str, answer: Any) -> str:
    """An aligned table: per day its date and the measure's values (`-` for none), (status,
    runs), or one line per node execution."""
    if measure == NODE_EXECUTIONS:
        return _columns(
            ("index", "node_type", "title", "status", "elapsed_time", "created_at", "id"),
            [
                (str(item.index), item.node_type, item.title, item.status, f"{item.elapsed_time:.3f}",
                 str(item.created_at), item.id)
                for item in answer.data
            ],
        )  # fmt: skip
    rows: list[tuple[str, ...]]
    if measure in DAILY_BY_PATH:
        fields = DAILY_BY_PATH[measure].fields
        rows = [("date", *fields)]
        rows += [(point.date, *(_cell(getattr(point, field)) for field in fields)) for point in answer.data]
    else:
        rows = [
            ("status", "runs"),
            *((name, str(value)) for name, value in msgspec.structs.asdict(answer).items()),
        ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            [
                f"{row[0]:<{widths[0]}}",
                *(f"{cell:>{width}}" for cell, width in zip(row[1:], widths[1:], strict=True)),
            ]
        )
        for row in rows
    )


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _columns(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[n]) for row in (header, *rows)) for n in range(len(header))]
    return "\n".join("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
                     for row in (header, *rows))  # fmt: skip
