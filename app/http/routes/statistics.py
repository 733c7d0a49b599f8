"""The daily statistics: one handler body, built per measure and per path (native or console)."""

from typing import Any

from litestar import Response
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler

from app.core.measures import DailyMeasure
from app.core.service import StatsService
from app.http.errors import ERROR_RESPONSES
from app.http.routes.methods import get_or_head
from schemas.requests import DailyRequest
from schemas.statistics import DailyAnswer


def daily_route(
    measure: DailyMeasure, path: str, name: str, opt: dict[str, Any] | None = None
) -> HTTPRouteHandler:
    """GET `path` answering `measure` for the request the router's dependencies build; `opt`:
    litestar's route options (the console's name the checks Dify runs before the route)."""
    answer_type: Any = DailyAnswer[measure.point_type]  # type: ignore[name-defined]

    async def handler(
        service: NamedDependency[StatsService], daily_request: NamedDependency[DailyRequest]
    ) -> Response[answer_type]:
        points, cache_result = await service.daily(measure, daily_request)
        headers = service.answer_headers(cache_result, daily_request.start_us)
        return Response(DailyAnswer(data=points), headers=headers)

    handler.__name__ = handler.__qualname__ = f"{name}_{measure.name}"
    return get_or_head(
        path,
        summary=measure.summary,
        name=f"{name}-{measure.name}",
        tags=["statistics"],
        responses=ERROR_RESPONSES,
        opt=opt,
    )(handler)
