"""Every route that answers GET answers HEAD too (same status and headers, no body), as HTTP
clients and health checkers expect."""

from __future__ import annotations

from typing import Any

from litestar import HttpMethod, route
from litestar.handlers import HTTPRouteHandler


def get_or_head(path: str, **options: Any) -> HTTPRouteHandler:
    return route(path, http_method=[HttpMethod.GET, HttpMethod.HEAD], **options)
