"""Liveness and readiness; both answer at once, whatever the load or the stores' state."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST

from app import __version__
from app.http.auth import METRICS_KEY, NO_CREDENTIALS
from app.http.routes.methods import get_or_head
from app.stores.backend import BackendUnavailable
from app.stores.readiness import SourceProblem, check_sources_lately
from app.stores.repository import StatsRepository

# /readyz answers within this, however the stores behave (orchestrators time out at ~2-3 s).
READY_WITHIN_S = 1.8
# The table-and-columns part gets at most this of it; if it cannot finish (busy pool, locked
# table), the store's own answer decides.
SCHEMA_CHECK_WITHIN_S = 0.8


class Health(msgspec.Struct, frozen=True, omit_defaults=True):
    status: str
    version: str | None = None  # /healthz: which release runs
    reason: str | None = None
    circuits: dict[str, str] | None = None  # each source's breaker: closed (normal) or open
    # With STATS_REDIS_URL: "up", or "down" (then this replica answers alone: its own cache, its
    # share of the budget). Redis accelerates; it is not a source, so "down" is still ready.
    redis: str | None = None
    replicas_seen: int | None = None
    # With Redis: "fleet" (STATS_POOL_SIZE shared by every replica), or "local" while this
    # replica's statements take its local share (Redis down, or the budget's script failing).
    budget: str | None = None
    node_logstore: str | None = None  # absent (why): optional, never makes this 503; omitted while there


@get_or_head(
    "/healthz", summary="The process is up", tags=["operations"], sync_to_thread=False, opt=NO_CREDENTIALS
)
def healthz() -> Health:
    return Health(status="ok", version=__version__)


@get_or_head(
    "/metrics",
    summary="Prometheus metrics",
    tags=["operations"],
    include_in_schema=False,
    opt=METRICS_KEY,  # open unless STATS_METRICS_KEY is set
)
async def prometheus_metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Shared gauges (the fleet's slots in use) are read from Redis first: they say how it is now."""
    return Response(await request.app.state.metrics.scrape(), media_type=CONTENT_TYPE_LATEST)


@get_or_head(
    "/readyz",
    summary="Every source answers, with its table and columns",
    tags=["operations"],
    opt=NO_CREDENTIALS,
)
async def readyz(
    repository: NamedDependency[StatsRepository], request: Request[Any, Any, Any]
) -> Response[Health]:
    """A store that answered a query within the last probe interval is ready; otherwise one
    shared probe on a fresh connection decides, so this never queues behind a busy pool and
    an open circuit answers at once. Its table and columns are checked too, at most once a
    minute (app/stores/readiness.py)."""
    backends = [source.backend for source in repository.sources]
    started = time.monotonic()
    reason = None
    try:
        async with asyncio.timeout(READY_WITHIN_S):
            for backend in backends:
                await backend.ready()
            await check_sources_lately(repository.sources, within=SCHEMA_CHECK_WITHIN_S)
    except (BackendUnavailable, SourceProblem) as error:
        reason = f"backend: {error}"
    except TimeoutError:
        reason = f"backend: no answer within {READY_WITHIN_S} s"
    circuits: dict[str, str] = {backend.name: backend.breaker.state for backend in backends}
    nodes = await node_logstore_state(request, repository, READY_WITHIN_S - (time.monotonic() - started))
    shared: dict[str, Any] = request.app.state.fleet.readiness()
    if reason is not None:
        unavailable = Health(
            status="unavailable", reason=reason, circuits=circuits, node_logstore=nodes, **shared
        )
        return Response(unavailable, status_code=503)
    return Response(Health(status="ok", circuits=circuits, node_logstore=nodes, **shared))


async def node_logstore_state(
    request: Request[Any, Any, Any], repository: StatsRepository, time_left: float
) -> str | None:
    """Why the node LogStore is absent (None while it is there, or without a LogStore), probed
    again while it is absent, in what is left of /readyz's time."""
    node_logstore = request.app.state.node_logstore
    if node_logstore is None:
        return None
    if time_left > 0.05:
        logstore = next(source.backend for source in repository.sources if source.plan != "workflow_runs")
        await node_logstore.recheck(logstore, within=min(SCHEMA_CHECK_WITHIN_S, time_left))
    return None if node_logstore.problem is None else str(node_logstore.state)
