"""Discovery: which tenants and apps have runs, so a caller of the native API can find the ids
to ask about. Ids only (app names live in Dify's database, not in the LogStore)."""

from __future__ import annotations

from litestar import Response, Router
from litestar.di import NamedDependency

from app.core.service import StatsService
from app.http.auth import every_tenant_guard
from app.http.errors import ERROR_RESPONSES
from app.http.routes.methods import get_or_head
from app.http.routes.params import TenantId
from schemas.discovery import TenantAppsAnswer, TenantsAnswer

WINDOW_NOTE = (
    "Runs created in the last 90 days, every trigger source and "
    "status; over both sources during a migration, each run counted once. `last_run_at` is the "
    "created time of the newest run, in epoch seconds. Answers are cached for STATS_CACHE_TTL."
)


@get_or_head(
    "/",
    responses=ERROR_RESPONSES,
    summary="Tenants with runs in the last 90 days, busiest first (a key for every tenant only)",
    description=WINDOW_NOTE + " Needs a key configured as `key=*` (403 otherwise); open when auth is off.",
    guards=[every_tenant_guard],
)
async def list_tenants(service: NamedDependency[StatsService]) -> Response[TenantsAnswer]:
    answer, cache_result = await service.tenants()
    return Response(answer, headers={"X-Cache": cache_result})


@get_or_head(
    "/{tenant_id:str}/apps",
    responses=ERROR_RESPONSES,
    summary="The tenant's apps with runs in the last 90 days, busiest first",
    description=WINDOW_NOTE,
)
async def list_tenant_apps(
    service: NamedDependency[StatsService], tenant_id: TenantId
) -> Response[TenantAppsAnswer]:
    answer, cache_result = await service.tenant_apps(tenant_id.lower())
    return Response(answer, headers={"X-Cache": cache_result})


discovery_router = Router(
    path="/v1/tenants",
    route_handlers=[list_tenants, list_tenant_apps],
    security=[{"bearer": []}],
    tags=["discovery"],
)
