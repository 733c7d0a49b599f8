"""The daily statistics: one handler body, built per measure and per path (native or console).

Natively a measure is also CSV (`format=csv` or `Accept: text/csv`; app/http/csv.py): a header
row, `date` and the point's fields, one row per day."""

from typing import Any

from litestar import Response
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import Operation

from app.core.measures import DailyMeasure
from app.core.service import StatsService
from app.http.csv import AnswerFormat, CsvTable, csv_response, range_label
from app.http.errors import ERROR_RESPONSES
from app.http.routes.formats import csv_operation
from app.http.routes.methods import get_or_head
from schemas.requests import DailyRequest
from schemas.statistics import DailyAnswer


def daily_filename(measure: DailyMeasure, request: DailyRequest) -> str:
    """`<native path name>_<app id>_<range>.csv`, the range's bounds in its time zone."""
    label = range_label(request.start_us, request.end_us, request.timezone)
    return f"{measure.native_path.lstrip('/')}_{request.app_id}_{label}.csv"


def daily_route(
    measure: DailyMeasure,
    path: str,
    name: str,
    opt: dict[str, Any] | None = None,
    *,
    csv_too: bool = False,
) -> HTTPRouteHandler:
    """GET `path` answering `measure` for the request the router's dependencies build; `opt`:
    litestar's route options (the console's name the checks Dify runs before the route); with
    `csv_too`, its OpenAPI operation also declares the CSV answer (the router provides
    `answer_format`)."""
    answer_type: Any = DailyAnswer[measure.point_type]  # type: ignore[name-defined]
    table = CsvTable(measure.point_type)

    async def handler(
        service: NamedDependency[StatsService],
        daily_request: NamedDependency[DailyRequest],
        answer_format: NamedDependency[AnswerFormat],
    ) -> Response[answer_type]:
        points, cache_result = await service.daily(measure, daily_request)
        headers = service.answer_headers(cache_result, daily_request.start_us)
        if answer_format == "csv":
            return csv_response(table, points, daily_filename(measure, daily_request), headers)
        return Response(DailyAnswer(data=points), headers=headers)

    handler.__name__ = handler.__qualname__ = f"{name}_{measure.name}"
    return get_or_head(
        path,
        summary=measure.summary,
        name=f"{name}-{measure.name}",
        tags=["statistics"],
        responses=ERROR_RESPONSES,
        opt=opt,
        operation_class=csv_operation(table.describe()) if csv_too else Operation,
    )(handler)
