"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.readiness import SourceProblem, check_sources
from app.repository import StatsRepository


class Health(msgspec.Struct, frozen=True, omit_defaults=True):
    status: str
    reason: str | None = None


@get("/healthz", summary="The process is up", tags=["operations"], sync_to_thread=False)
def healthz() -> Health:
    return Health(status="ok")


@get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["operations"],
    sync_to_thread=False,
    include_in_schema=False,
)
def prometheus_metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@get("/readyz", summary="Every source answers, with its table and columns", tags=["operations"])
async def readyz(repository: NamedDependency[StatsRepository]) -> Response[Health]:
    try:
        await check_sources(repository.sources)
    except SourceProblem as error:
        return Response(Health(status="unavailable", reason=f"backend: {error}"), status_code=503)
    return Response(Health(status="ok"))
