"""GET .../runs/export: every run created in a range, streamed as NDJSON or CSV.

The first page is read before the answer starts, so that a request the store cannot answer at
all is a plain 503 (or 400) like any other. From then on the status is sent: a failure later on
ends the body with one line that is no run, so a file cut short never looks complete:
- NDJSON: the error as Dify shapes it, `{"code": ..., "message": ..., "status": ...}` (a run's
  line always has an `id`);
- CSV: a row `#export-incomplete,<status>,<code>,"<message>"` (a run's id never starts with `#`).
When the client goes, the request is cancelled (app/http/middleware.py), and with it the
statement running for the next page, on the server. Exports bypass the answer cache.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, Protocol

import msgspec
import structlog
from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.response import Stream

from app.http.csv import CSV_MEDIA_TYPE, attachment, cell, range_label
from app.http.errors import ERROR_RESPONSES, EXCEPTION_HANDLERS
from app.http.routes.formats import NDJSON_MEDIA_TYPE, export_format, export_operation
from app.http.routes.methods import get_or_head
from app.http.routes.params import Status
from app.http.routes.runs import RUN_COLUMNS
from app.stores.run_export import RunExport
from schemas.errors import ErrorBody
from schemas.exports import RunExportRequest
from schemas.requests import DailyRequest
from schemas.runs import RunSummary

log = structlog.get_logger("dify_stats.exports")
INCOMPLETE = "#export-incomplete"


class ExportForm(Protocol):
    """How pages of run summaries are written, and the line that says the export stopped early."""

    media_type: str
    extension: str

    def start(self) -> bytes: ...

    def page(self, runs: list[RunSummary]) -> bytes: ...

    def incomplete(self, error: ErrorBody) -> bytes: ...


class NdjsonForm:
    """One JSON object per line; the error object, in Dify's shape, as the last line."""

    media_type = NDJSON_MEDIA_TYPE
    extension = "ndjson"
    _encoder = msgspec.json.Encoder()

    def start(self) -> bytes:
        return b""

    def page(self, runs: list[RunSummary]) -> bytes:
        return self._encoder.encode_lines(runs)

    def incomplete(self, error: ErrorBody) -> bytes:
        return self._encoder.encode(error) + b"\n"


class CsvForm:
    """The header row first, one row per run (the run list's columns); `#export-incomplete`,
    the status, the code and the message as the last row."""

    media_type = CSV_MEDIA_TYPE
    extension = "csv"

    def start(self) -> bytes:
        return RUN_COLUMNS.header().encode()

    def page(self, runs: list[RunSummary]) -> bytes:
        return RUN_COLUMNS.rows(runs).encode()

    def incomplete(self, error: ErrorBody) -> bytes:
        return f"{INCOMPLETE},{error.status},{error.code},{cell(error.message)}\r\n".encode()


EXPORT_FORMS: dict[str, ExportForm] = {"ndjson": NdjsonForm(), "csv": CsvForm()}


def export_request(daily_request: NamedDependency[DailyRequest], status: Status = None) -> RunExportRequest:
    """The statistics' parameters, checked as theirs (a range of at most STATS_MAX_RANGE_DAYS when
    both ends are given; `triggered_from` app-run by default), and the run list's `status`."""
    return RunExportRequest(**{**msgspec.structs.asdict(daily_request), "status": status})


def export_filename(request: RunExportRequest, form: ExportForm) -> str:
    label = range_label(request.start_us, request.end_us, request.timezone)
    return f"runs_{request.app_id}_{request.triggered_from}_{label}.{form.extension}"


def error_body(error: Exception, request: Request[Any, Any, Any] | None = None) -> ErrorBody:
    """What the API answers for `error` before an answer starts (the same handlers, so the same
    codes, messages and log lines); without a request (the CLI) an unexpected error is a bare 500."""
    for kind in type(error).__mro__:
        handler = EXCEPTION_HANDLERS.get(kind)
        if handler is None:
            continue
        if kind is Exception and request is None:
            break
        content = handler(request, error).content  # type: ignore[operator]
        if isinstance(content, ErrorBody):
            return content
    return ErrorBody(code="internal_error", message="internal error", status=500)


async def body(
    request: Request[Any, Any, Any],
    form: ExportForm,
    first: list[RunSummary],
    pages: AsyncGenerator[list[RunSummary], None],
) -> AsyncIterator[bytes]:
    """The answer's chunks: the start and the first page, then a chunk per page as the client
    takes them; a failure ends it with the form's incomplete line."""
    async with aclosing(pages):
        yield form.start() + form.page(first)
        exported = len(first)
        try:
            async for page in pages:
                yield form.page(page)
                exported += len(page)
        except Exception as error:  # a client that went away is a cancellation: not caught
            stopped = error_body(error, request)
            log.warning("export_incomplete", code=stopped.code, runs_sent=exported)
            yield form.incomplete(stopped)


@get_or_head(
    "/runs/export",
    summary="Every run created in the range, streamed (NDJSON or CSV), in the run list's order",
    tags=["runs"],
    responses=ERROR_RESPONSES,
    operation_class=export_operation(RUN_COLUMNS.describe()),
    dependencies={
        "export_request": Provide(export_request, sync_to_thread=False),
        "export_format": Provide(export_format, sync_to_thread=False),
    },
)
async def export_runs(
    request: Request[Any, Any, Any],
    run_export: NamedDependency[RunExport],
    export_request: NamedDependency[RunExportRequest],
    export_format: NamedDependency[str],
) -> Stream:
    form = EXPORT_FORMS[export_format]
    pages = run_export.pages(export_request)
    first: list[RunSummary] = await anext(pages, [])
    return Stream(
        body(request, form, first, pages),
        media_type=form.media_type,
        headers=attachment(export_filename(export_request, form)),
    )
