"""Every error is Dify-shaped JSON, `{"code", "message", "status"}`; never a stack trace."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi import ResponseSpec

from app.http.console_auth import DifyDenied, DifyUnavailable
from app.http.params import PARAMETER_RULES, BadParameter
from app.stores.backend import BackendUnavailable, TooManyQueries
from app.stores.node_logstore import NodeLogstoreAbsent
from schemas.errors import ErrorBody

log = structlog.get_logger("dify_stats.errors")

# Declared on every router, so the OpenAPI document shows the body these handlers really send.
ERROR_RESPONSES: dict[int, ResponseSpec] = {
    status: ResponseSpec(data_container=ErrorBody, description=description)
    for status, description in (
        (400, "A parameter is invalid; the message names it"),
        (401, "No valid credentials"),
        (403, "The credentials may not read this tenant or app"),
        (404, "No such run, or no such route"),
        (503, "The backend or Dify's console did not answer in time"),
    )
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response[ErrorBody]:
    return Response(
        ErrorBody(code=code, message=message, status=status),
        status_code=status,
        headers=headers,
        media_type=MediaType.JSON,  # also where the route's own media type is another (the document's)
    )


def bad_parameter(_: Request[Any, Any, Any], error: BadParameter) -> Response[ErrorBody]:
    return error_response(400, "invalid_param", str(error))


def validation_failed(_: Request[Any, Any, Any], error: ValidationException) -> Response[ErrorBody]:
    """A body or parameter litestar could not decode; name the field, as our own checks do."""
    problems = error.extra if isinstance(error.extra, list) else []
    details = "; ".join(
        f"{item.get('key') or 'body'}: {PARAMETER_RULES.get(item.get('key') or '') or item.get('message')}"
        for item in problems
        if isinstance(item, dict)
    )
    return error_response(400, "invalid_param", details or str(error.detail))


def backend_unavailable(_: Request[Any, Any, Any], __: BackendUnavailable) -> Response[ErrorBody]:
    return error_response(
        503,
        "backend_unavailable",
        "the statistics backend is not answering; try again shortly",
        {"Retry-After": "5"},
    )


def node_logstore_absent(_: Request[Any, Any, Any], error: NodeLogstoreAbsent) -> Response[ErrorBody]:
    """The node LogStore is optional; without it only the node routes are unavailable."""
    return error_response(503, "node_logstore_absent", str(error))


def too_many_queries(_: Request[Any, Any, Any], error: TooManyQueries) -> Response[ErrorBody]:
    """A 400, not a 503: the same request would exceed the cap again, so retrying cannot help."""
    return error_response(400, "too_many_queries", str(error))


def dify_denied(_: Request[Any, Any, Any], error: DifyDenied) -> Response[Any]:
    """Dify's own verdict, as Dify sent it (a 401 with its WWW-Authenticate)."""
    return Response(error.body, status_code=error.status_code, headers=error.headers)


def dify_unavailable(request: Request[Any, Any, Any], __: DifyUnavailable) -> Response[ErrorBody]:
    if not request.app.state.settings.dify_console_api_url:
        return error_response(
            503,
            "dify_unavailable",
            "the console drop-in is off: DIFY_CONSOLE_API_URL is not set on dify-stats",
        )
    return error_response(
        503,
        "dify_unavailable",
        "Dify's console did not confirm access; try again shortly",
        {"Retry-After": "5"},
    )


def http_error(request: Request[Any, Any, Any], error: HTTPException) -> Response[ErrorBody]:
    codes = {
        400: "invalid_param",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }
    message = (
        "no such route"
        if isinstance(error, NotFoundException) and error.detail == "Not Found"
        else error.detail
    )
    fallback = "invalid_param" if error.status_code < 500 else "internal_error"
    response = error_response(error.status_code, codes.get(error.status_code, fallback), str(message))
    response.headers.update(error.headers or {})  # a 405's Allow, a 401's WWW-Authenticate
    if "request_id" not in request.scope.get("state", {}):
        # No route matched (unknown path, wrong method): the request middleware never ran, so this
        # answer gets its request id, log line and metric here.
        request_id = uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        request.app.state.metrics.requests.labels(route="(no route)", status=str(error.status_code)).inc()
        log.info("request", request_id=request_id, method=request.method, route="(no route)",
                 status=error.status_code)  # fmt: skip
    return response


def unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[ErrorBody]:
    request_id = str(request.scope.get("state", {}).get("request_id", ""))
    log.exception("unhandled_error", error_type=type(error).__name__, request_id=request_id)
    return error_response(500, "internal_error", f"internal error (request id {request_id})")


EXCEPTION_HANDLERS = {
    BadParameter: bad_parameter,
    ValidationException: validation_failed,
    BackendUnavailable: backend_unavailable,
    NodeLogstoreAbsent: node_logstore_absent,
    TooManyQueries: too_many_queries,
    DifyDenied: dify_denied,
    DifyUnavailable: dify_unavailable,
    HTTPException: http_error,
    Exception: unexpected,
}
