"""The native API: /v1/tenants/{tenant_id}/apps/{app_id}/..., for curl, scripts and Grafana
Infinity. A bearer key sees only its tenants (checked in app/http/auth.py, before admission)."""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide

from app.core.measures import DAILY_MEASURES
from app.http.params import zone_param
from app.http.routes.exports import export_runs
from app.http.routes.formats import answer_format
from app.http.routes.params import DailyTrigger, TenantId, TimeZone
from app.http.routes.requests import REQUEST_DEPENDENCIES
from app.http.routes.runs import RunsController
from app.http.routes.statistics import daily_route
from schemas.requests import TriggerSource


def path_tenant(tenant_id: TenantId) -> str:
    return tenant_id.lower()


def query_zone(timezone: TimeZone = "UTC") -> str:
    return zone_param("timezone", timezone)


def query_daily_trigger(triggered_from: DailyTrigger = "app-run") -> TriggerSource:
    return triggered_from


native_router = Router(
    path="/v1/tenants/{tenant_id:str}/apps/{app_id:str}",
    route_handlers=[
        *(daily_route(m, f"/statistics{m.native_path}", "native", csv_too=True) for m in DAILY_MEASURES),
        RunsController,
        export_runs,
    ],
    dependencies={
        **REQUEST_DEPENDENCIES,
        "tenant": Provide(path_tenant, sync_to_thread=False),
        "zone": Provide(query_zone, sync_to_thread=False),
        "daily_trigger": Provide(query_daily_trigger, sync_to_thread=False),
        "answer_format": Provide(answer_format, sync_to_thread=False),
    },
    security=[{"bearer": []}],
)
