"""Request id and one structured log line per request (route template, status, time); a
request's work stops when its client goes away."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from app.metrics import Metrics, RequestFigures, current_figures
from app.stores.backend import statement_scope

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
            if message["type"] == "http.response.start" and not figures.client_gone:
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
                if figures.client_gone:
                    status = 499  # nginx's name for a request its client abandoned
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


def cancel_on_disconnect_middleware(app: ASGIApp) -> ASGIApp:
    """Run the request in a task of its own and cancel it when the client disconnects before
    the answer is complete; its statements still running are then cancelled on the server, as
    are those left behind when a request ends any other way (app/backend.statement_scope).

    ASGI servers do not cancel a handler whose client left; they report `http.disconnect` on
    `receive`, which is watched here while the handler runs (its own `receive` calls are fed
    from the same messages)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        messages: asyncio.Queue[ReceiveMessage] = asyncio.Queue()
        answered = False

        async def send_tracking(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        async def receive_queued() -> ReceiveMessage:
            return await messages.get()

        async def handle() -> None:
            await app(scope, receive_queued, send_tracking)

        async with statement_scope():
            handling = asyncio.create_task(handle())

            async def watch_client() -> None:
                while True:
                    message = await receive()
                    await messages.put(message)
                    if message["type"] == "http.disconnect":
                        if not answered and not handling.done():
                            figures = current_figures.get()
                            if figures is not None:
                                figures.client_gone = True
                            handling.cancel()
                        return

            watching = asyncio.create_task(watch_client())
            try:
                await asyncio.wait({handling})
            finally:
                watching.cancel()
                if not handling.done():  # this middleware itself was cancelled
                    handling.cancel()
            if not handling.cancelled():
                handling.result()  # re-raise what the handler raised

    return middleware
