"""Dependencies that build each validated request struct from typed parameters.

Native and console routes share these; each router provides what differs between them:
`tenant` (the path's tenant, or the one Dify's console says the caller is in), `zone` (the
`timezone` parameter, or the account's zone) and `daily_trigger` (a parameter, or Dify's fixed
`app-run`). Handlers receive the finished struct and never parse anything themselves.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request
from litestar.di import NamedDependency, Provide

from app.config import Settings
from app.http.params import MUST_BE_LIMIT, BadParameter, created_range, time_range_param
from app.http.routes.params import AppId, End, LastId, Limit, RunId, RunsTrigger, Start, Status, TimeRange
from schemas.requests import (
    CountRequest,
    DailyRequest,
    RunDetailRequest,
    RunListRequest,
    TriggerSource,
)

_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")


def daily_request(
    tenant: NamedDependency[str],
    zone: NamedDependency[str],
    daily_trigger: NamedDependency[TriggerSource],
    settings: NamedDependency[Settings],
    app_id: AppId,
    start: Start = None,
    end: End = None,
) -> DailyRequest:
    created = created_range(start, end, zone, settings.max_range_days)
    return DailyRequest(
        tenant_id=tenant,
        app_id=app_id.lower(),
        triggered_from=daily_trigger,
        timezone=zone,
        start_us=created.start_us,
        end_us=created.end_us,
    )


def count_request(
    tenant: NamedDependency[str],
    settings: NamedDependency[Settings],
    app_id: AppId,
    status: Status = None,
    time_range: TimeRange = None,
    triggered_from: RunsTrigger = "debugging",
) -> CountRequest:
    return CountRequest(
        tenant_id=tenant,
        app_id=app_id.lower(),
        triggered_from=triggered_from,
        status=status,
        time_range_s=time_range_param("time_range", time_range, settings.max_range_days)
        if time_range
        else None,
    )


def list_request(
    tenant: NamedDependency[str],
    request: Request[Any, Any, Any],
    app_id: AppId,
    limit: Limit = 20,
    last_id: LastId = None,
    status: Status = None,
    triggered_from: RunsTrigger = "debugging",
) -> RunListRequest:
    # litestar reads an integer parameter leniently ("1e1" and "10.0" as 10): the text must be digits.
    if not _WHOLE_NUMBER.fullmatch(request.query_params.get("limit", "0")):
        raise BadParameter("limit", MUST_BE_LIMIT)
    return RunListRequest(
        tenant_id=tenant,
        app_id=app_id.lower(),
        triggered_from=triggered_from,
        status=status,
        limit=limit,
        last_id=last_id.lower() if last_id else None,
    )


def detail_request(tenant: NamedDependency[str], app_id: AppId, run_id: RunId) -> RunDetailRequest:
    return RunDetailRequest(tenant_id=tenant, app_id=app_id.lower(), run_id=run_id.lower())


# Mounted on the native and the console router, each of which adds `tenant`, `zone` and
# `daily_trigger`.
REQUEST_DEPENDENCIES = {
    "daily_request": Provide(daily_request, sync_to_thread=False),
    "count_request": Provide(count_request, sync_to_thread=False),
    "list_request": Provide(list_request, sync_to_thread=False),
    "detail_request": Provide(detail_request, sync_to_thread=False),
}
