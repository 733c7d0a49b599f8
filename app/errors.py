"""Every error is Dify-shaped JSON, `{"code", "message", "status"}`; never a stack trace."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException

from app.backend import BackendUnavailable
from app.console_auth import DifyDenied, DifyUnavailable
from app.params import BadParameter

log = structlog.get_logger("dify_stats.errors")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response[dict[str, object]]:
    return Response({"code": code, "message": message, "status": status}, status_code=status, headers=headers)


def bad_parameter(_: Request[Any, Any, Any], error: BadParameter) -> Response[dict[str, object]]:
    return error_response(400, "invalid_param", str(error))


def validation_failed(_: Request[Any, Any, Any], error: ValidationException) -> Response[dict[str, object]]:
    """A body or parameter litestar could not decode; name the field, as our own checks do."""
    problems = error.extra if isinstance(error.extra, list) else []
    details = "; ".join(
        f"{item.get('key') or 'body'}: {item.get('message')}" for item in problems if isinstance(item, dict)
    )
    return error_response(400, "invalid_param", details or str(error.detail))


def backend_unavailable(_: Request[Any, Any, Any], __: BackendUnavailable) -> Response[dict[str, object]]:
    return error_response(
        503,
        "backend_unavailable",
        "the statistics backend is not answering; try again shortly",
        {"Retry-After": "5"},
    )


def dify_denied(_: Request[Any, Any, Any], error: DifyDenied) -> Response[Any]:
    """Dify's own verdict, as Dify sent it."""
    return Response(error.body, status_code=error.status_code)


def dify_unavailable(request: Request[Any, Any, Any], __: DifyUnavailable) -> Response[dict[str, object]]:
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


def http_error(_: Request[Any, Any, Any], error: HTTPException) -> Response[dict[str, object]]:
    codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}
    message = (
        "no such route"
        if isinstance(error, NotFoundException) and error.detail == "Not Found"
        else error.detail
    )
    return error_response(error.status_code, codes.get(error.status_code, "error"), str(message))


def unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[dict[str, object]]:
    request_id = str(request.scope.get("state", {}).get("request_id", ""))
    log.exception("unhandled_error", error_type=type(error).__name__, request_id=request_id)
    return error_response(500, "internal_error", f"internal error (request id {request_id})")


EXCEPTION_HANDLERS = {
    BadParameter: bad_parameter,
    ValidationException: validation_failed,
    BackendUnavailable: backend_unavailable,
    DifyDenied: dify_denied,
    DifyUnavailable: dify_unavailable,
    HTTPException: http_error,
    Exception: unexpected,
}
