"""Request id and one structured log line per request (route template, status, time)."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import Metrics, RequestFigures, current_figures

log = structlog.get_logger("dify_stats.http")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        metrics: Metrics = scope["litestar_app"].state.metrics
        offered = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _SAFE_REQUEST_ID.match(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        cache_result = None
        figures = RequestFigures()
        token = current_figures.set(figures)

        async def send_with_id(message: Message) -> None:
            nonlocal status, cache_result
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers", []))
                cache_result = headers.get(b"x-cache", b"").decode() or None
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        route = scope.get("path_template", "?")
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await app(scope, receive, send_with_id)
            finally:
                current_figures.reset(token)
                elapsed = time.perf_counter() - started
                metrics.requests.labels(route=route, status=str(status)).inc()
                metrics.latency.labels(route=route).observe(elapsed)
                if cache_result:
                    metrics.cache.labels(result=cache_result).inc()
                log.info(
                    "request",
                    method=scope.get("method", "?"),
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    cache=cache_result,
                    backend_ms=round(figures.backend_ms, 2),
                    backend_queries=figures.backend_queries,
                )

    return middleware
