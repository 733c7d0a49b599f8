"""The OpenAPI document's routes (/schema), answering as every other route does.

litestar serves the document through handlers of its own on this router: GET only, and an HTML
404 for an unknown path that no exception handler sees. Here the router adds HEAD on the same
paths and turns any 404 into Dify's shape.
"""

from __future__ import annotations

from typing import Any

from litestar import HttpMethod, Request, Response, Router, route
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, YamlRenderPlugin

from app.http.auth import NO_CREDENTIALS
from app.http.errors import error_response

SCHEMA_PATH = "/schema"
# The document as JSON (also at /schema itself) and YAML; no viewer that needs a CDN.
RENDER_PLUGINS: tuple[OpenAPIRenderPlugin, ...] = (JsonRenderPlugin(), YamlRenderPlugin())


def _plugin_for(path: str) -> OpenAPIRenderPlugin | None:
    relative = path.removeprefix(SCHEMA_PATH) or "/"
    if relative == "/":
        return RENDER_PLUGINS[0]
    return next((plugin for plugin in RENDER_PLUGINS if plugin.has_path(relative)), None)


@route(
    ["/", *(path for plugin in RENDER_PLUGINS for path in plugin.paths), "/{path:str}"],
    http_method=HttpMethod.HEAD,
    sync_to_thread=False,
)
def schema_head(request: Request[Any, Any, Any]) -> Response[bytes]:
    """HEAD of the document: GET's status and headers (litestar sends no body for HEAD)."""
    plugin = _plugin_for(request.url.path.rstrip("/") or "/")
    if plugin is None:
        raise NotFoundException
    schema = request.app.openapi_schema.to_schema()
    return Response(plugin.render(request, schema), media_type=plugin.media_type)


async def dify_shaped_not_found(response: Response[Any]) -> Response[Any]:
    """litestar's HTML 404 for an unknown document path, as every other unknown route answers."""
    if response.status_code == 404:
        return error_response(404, "not_found", "no such route")
    return response


def schema_router() -> Router:
    """A new router for one application's document routes (litestar adds its handlers to it)."""
    return Router(
        SCHEMA_PATH,
        route_handlers=[schema_head],
        after_request=dify_shaped_not_found,
        include_in_schema=False,
        opt=NO_CREDENTIALS,
    )
