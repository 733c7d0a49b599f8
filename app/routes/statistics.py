"""The daily statistics: one handler body, built per measure and per path (native or console)."""

from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler

from app.errors import ERROR_RESPONSES
from app.measures import DailyMeasure
from app.service import StatsService
from schemas.requests import DailyRequest
from schemas.statistics import DailyAnswer


def daily_route(measure: DailyMeasure, path: str, name: str) -> HTTPRouteHandler:
    """GET `path` answering `measure` for the request the router's dependencies build."""
    answer_type: Any = DailyAnswer[measure.point_type]  # type: ignore[name-defined]

    async def handler(
        service: NamedDependency[StatsService], daily_request: NamedDependency[DailyRequest]
    ) -> Response[answer_type]:
        points, cache_result = await service.daily(measure, daily_request)
        return Response(DailyAnswer(data=points), headers={"X-Cache": cache_result})

    handler.__name__ = handler.__qualname__ = f"{name}_{measure.name}"
    return get(
        path,
        summary=measure.summary,
        name=f"{name}-{measure.name}",
        tags=["statistics"],
        responses=ERROR_RESPONSES,
    )(handler)
