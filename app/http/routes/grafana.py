"""Grafana JSON datasource protocol, mounted at /grafana (datasource URL http://host:port/grafana)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Router, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from app.config import Settings
from app.core.app_directory import AppDirectory
from app.core.json_depth import NestedTooDeeply, decode_within_depth
from app.core.service import StatsService
from app.http.errors import ERROR_RESPONSES
from app.http.grafana import (
    FILTER_KEYS,
    GrafanaQuery,
    metric_catalogue,
    payload_options,
    visible_apps,
)
from app.http.params import BadParameter
from app.http.routes.methods import get_or_head
from schemas.grafana import (
    MetricInfo,
    MetricsRequest,
    Option,
    PayloadOptionsRequest,
    QueryRequest,
    Table,
    TagKey,
    TagValue,
    TagValuesRequest,
    TimeSeries,
    VariableItem,
    VariableRequest,
)

AnyRequest = Request[Any, Any, Any]


async def body_is_json(request: AnyRequest) -> None:
    """Every POST body is JSON or empty, also where a route reads nothing from it: a malformed one,
    or one nested deeper than litestar's decoder could follow, is the same 400 naming the body on
    every route (this runs before litestar decodes the body). An empty body is no body (a route
    that needs one says so); whitespace alone is neither JSON nor empty."""
    if request.method != "POST":
        return
    body = await request.body()
    if not body.strip():
        data = request.route_handler.parsed_fn_signature.parameters.get("data")
        if data is not None and not data.is_optional:
            raise BadParameter("body", "is empty: this route needs a JSON object")
        if body:
            raise BadParameter("body", "holds only whitespace: send a JSON object, or no body at all")
    else:
        try:
            decode_within_depth(body, msgspec.json.decode)
        except NestedTooDeeply as error:
            raise BadParameter("body", str(error)) from None
        except msgspec.DecodeError as error:
            raise BadParameter("body", f"is not valid JSON ({error})") from None


async def _apps(app_directory: AppDirectory, request: AnyRequest) -> list[tuple[str, str, int]]:
    """The apps of the caller's key, from the source (never from anything shared in Redis)."""
    return visible_apps(await app_directory.apps(), request.auth)


@get_or_head(
    "/", responses=ERROR_RESPONSES, summary="Save & test: the datasource answers", sync_to_thread=False
)
def grafana_health() -> dict[str, str]:
    return {"status": "ok"}


@post(
    "/metrics",
    responses=ERROR_RESPONSES,
    status_code=200,
    summary="The metrics (daily series, tables) and their payload options",
    sync_to_thread=False,
)
def grafana_metrics(data: JSONBody[MetricsRequest | None] = None) -> list[MetricInfo]:
    return metric_catalogue()


@post(
    "/metric-payload-options",
    responses=ERROR_RESPONSES,
    status_code=200,
    summary="Options of one payload (apps, trigger, zone)",
)
async def grafana_payload_options(
    request: AnyRequest, app_directory: NamedDependency[AppDirectory], data: JSONBody[PayloadOptionsRequest]
) -> list[Option]:
    apps = await _apps(app_directory, request) if data.name == "app_id" else []
    return payload_options(data.name, apps)


@post(
    "/query",
    responses=ERROR_RESPONSES,
    status_code=200,
    summary="Series (daily measures) and tables (status counts, recent runs)",
)
async def grafana_query(
    request: AnyRequest,
    service: NamedDependency[StatsService],
    app_directory: NamedDependency[AppDirectory],
    settings: NamedDependency[Settings],
    data: JSONBody[QueryRequest],
) -> list[TimeSeries | Table]:
    query = GrafanaQuery(service, settings, data)
    return await query.answer(await _apps(app_directory, request))


@post(
    "/variable",
    responses=ERROR_RESPONSES,
    status_code=200,
    summary="Apps of the caller's tenants, for a dashboard variable",
)
async def grafana_variable(
    request: AnyRequest,
    app_directory: NamedDependency[AppDirectory],
    data: JSONBody[VariableRequest | None] = None,
) -> list[VariableItem]:
    apps = await _apps(app_directory, request)
    return [VariableItem(text=app, value=app, dunder_text=app, dunder_value=app) for _, app, _ in apps]


@post(
    "/tag-keys",
    responses=ERROR_RESPONSES,
    status_code=200,
    summary="Ad-hoc filter keys",
    sync_to_thread=False,
)
def grafana_tag_keys() -> list[TagKey]:
    return [TagKey(text=key) for key in FILTER_KEYS]


@post(
    "/tag-values",
    responses=ERROR_RESPONSES,
    status_code=200,
    summary="Values of one ad-hoc filter key",
    sync_to_thread=False,
)
def grafana_tag_values(data: JSONBody[TagValuesRequest]) -> list[TagValue]:
    return [TagValue(text=value) for value in FILTER_KEYS.get(data.key, ())]


grafana_router = Router(
    path="/grafana",
    route_handlers=[
        grafana_health,
        grafana_metrics,
        grafana_payload_options,
        grafana_query,
        grafana_variable,
        grafana_tag_keys,
        grafana_tag_values,
    ],
    before_request=body_is_json,
    security=[{"bearer": []}],
    tags=["grafana"],
)
