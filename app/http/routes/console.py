"""Dify console drop-in: the monitoring page's own paths, answered from the LogStore.

nginx routes these paths here (deploy recipe in the README). The caller's Dify session is checked
by Dify itself (app/http/console_auth.py) in the `access` dependency, before any handler runs,
with what Dify checks before the same route (its guard, app/http/console_guards.py, named in each
route's options); Dify also gives the tenant and the account's time zone, in which `start`/`end`
(`YYYY-MM-DD HH:MM`) are read, exactly as Dify reads them. Trigger source of the statistics:
`app-run`, as in Dify.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Router
from litestar.di import NamedDependency, Provide

from app.core.measures import DAILY_MEASURES
from app.http.auth import NO_CREDENTIALS
from app.http.console_auth import ConsoleAccess, ConsoleAuthorizer
from app.http.console_guards import AVERAGE_INTERACTIONS, GUARD_OPTION, STATISTICS, DifyGuard
from app.http.params import zone_param
from app.http.routes.chat_runs import AdvancedChatRunsController
from app.http.routes.formats import json_only
from app.http.routes.params import AppId
from app.http.routes.requests import REQUEST_DEPENDENCIES
from app.http.routes.runs import ConsoleRunsController
from app.http.routes.statistics import daily_route
from schemas.requests import TriggerSource

# Dify serves average interactions for workflow apps only; its other statistics for any app.
STATISTICS_GUARDS: dict[str, DifyGuard] = {"/average-app-interactions": AVERAGE_INTERACTIONS}


async def console_access(
    request: Request[Any, Any, Any], authorizer: NamedDependency[ConsoleAuthorizer], app_id: AppId
) -> ConsoleAccess:
    """Dify's verdict on the caller, the app and the route (the app id is checked before anything
    is forwarded)."""
    guard: DifyGuard = request.route_handler.opt[GUARD_OPTION]
    return await authorizer.authorize(request, app_id.lower(), guard)


def access_tenant(access: NamedDependency[ConsoleAccess]) -> str:
    return access.tenant_id


def access_zone(access: NamedDependency[ConsoleAccess]) -> str:
    return zone_param("timezone", access.timezone)


def app_run_trigger() -> TriggerSource:
    return "app-run"


console_router = Router(
    path="/console/api/apps/{app_id:str}",
    route_handlers=[
        *(
            daily_route(
                m,
                f"/workflow/statistics{m.console_path}",
                "console",
                opt={GUARD_OPTION: STATISTICS_GUARDS.get(m.console_path, STATISTICS)},
            )
            for m in DAILY_MEASURES
            if m.console_path is not None  # only the measures Dify's console has
        ),
        ConsoleRunsController,
        AdvancedChatRunsController,
    ],
    dependencies={
        **REQUEST_DEPENDENCIES,
        "access": Provide(console_access),
        "tenant": Provide(access_tenant, sync_to_thread=False),
        "zone": Provide(access_zone, sync_to_thread=False),
        "daily_trigger": Provide(app_run_trigger, sync_to_thread=False),
        "answer_format": Provide(json_only, sync_to_thread=False),
    },
    tags=["dify console"],
    opt=NO_CREDENTIALS,  # Dify decides, in the `access` dependency
)
