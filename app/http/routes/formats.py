"""Which format an answer is sent in, and what the OpenAPI document says about it.

Native list answers are JSON, or CSV with `format=csv` or `Accept: text/csv` (the parameter wins
over the header; `*/*` and no header mean JSON). The run export is NDJSON or CSV the same way.
Console routes answer Dify's JSON only: their router provides `answer_format` as `json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
)
from litestar.params import QueryParameter

from app.http.csv import ANSWER_FORMATS, CSV_MEDIA_TYPE, JSON_MEDIA_TYPE, AnswerFormat, wanted_format

NDJSON_MEDIA_TYPE = "application/x-ndjson"
EXPORT_FORMATS = ("ndjson", "csv")

ListFormat = Annotated[
    str | None,
    QueryParameter(
        description="json (the default) or csv; or send `Accept: text/csv`",
        schema_extra={"enum": list(ANSWER_FORMATS)},
    ),
]
ExportFormat = Annotated[
    str | None,
    QueryParameter(
        description="ndjson (the default) or csv; or send `Accept: text/csv`",
        schema_extra={"enum": list(EXPORT_FORMATS)},
    ),
]


# `format` is checked against its few values by equality: any text is a 400 naming it.
def answer_format(request: Request[Any, Any, Any], format: ListFormat = None) -> AnswerFormat:
    chosen = wanted_format(request, format, ANSWER_FORMATS, (JSON_MEDIA_TYPE, "text/csv"))
    return "csv" if chosen == "csv" else "json"


def json_only() -> AnswerFormat:
    """Dify's console routes: its JSON, whatever the client accepts."""
    return "json"


def export_format(request: Request[Any, Any, Any], format: ExportFormat = None) -> str:
    return wanted_format(request, format, EXPORT_FORMATS, (NDJSON_MEDIA_TYPE, "text/csv"))


_DISPOSITION = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING),
    description="attachment; filename=<what>_<app id>_<range>.<csv|ndjson>",
)


def csv_operation(columns: str) -> type[Operation]:
    """An operation whose 200 answer is also `text/csv` with these columns."""

    @dataclass
    class CsvOperation(Operation):
        def __post_init__(self) -> None:
            ok = (self.responses or {}).get("200")
            assert isinstance(ok, OpenAPIResponse) and ok.content is not None
            ok.content[CSV_MEDIA_TYPE] = OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.STRING,
                    description=f"with format=csv or Accept: text/csv: a header row ({columns}), then "
                    "one row per item of `data`; null is an empty cell",
                )
            )
            ok.headers = {**(ok.headers or {}), "Content-Disposition": _DISPOSITION}

    return CsvOperation


def export_operation(columns: str) -> type[Operation]:
    """The run export's 200 answer: NDJSON of run summaries, or CSV."""

    @dataclass
    class ExportOperation(Operation):
        def __post_init__(self) -> None:
            ok = (self.responses or {}).get("200")
            assert isinstance(ok, OpenAPIResponse)
            ok.content = {
                NDJSON_MEDIA_TYPE: OpenAPIMediaType(
                    schema=Reference(
                        ref="#/components/schemas/RunSummary",
                        description="one run summary (a JSON object) per line; a last line "
                        '{"code", "message", "status"} instead says the export stopped early',
                    )
                ),
                CSV_MEDIA_TYPE: OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.STRING,
                        description=f"a header row ({columns}), then one row per run; a last row "
                        "starting #export-incomplete instead says the export stopped early",
                    )
                ),
            }
            ok.description = "Every run created in the range, streamed in the run list's order"
            ok.headers = {**(ok.headers or {}), "Content-Disposition": _DISPOSITION}

    return ExportOperation
