"""Who is asking, decided before admission and before any body is read.

`Authorization: Bearer <key>`. Each route says in its `opt["credentials"]` what it needs:
`api_key` (the default, so a route that says nothing needs a key): one of STATS_API_KEYS, which
sees only its tenants; `metrics_key`: STATS_METRICS_KEY when it is set (/metrics); `none`:
nothing here (health, the OpenAPI document, and the console paths, which Dify authorizes).
A request without the credentials it needs is answered 401 (403 for a tenant its key may not
read) by this middleware, so it never counts against STATS_MAX_INFLIGHT nor a tenant's share.
The matched key is the request's `auth` (litestar's `request.auth`; None with auth off).

Every configured key is compared in constant time, and all of them are compared, so timing tells
nothing about which one was close.
"""

from __future__ import annotations

import hmac
from typing import Any, Literal

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from app.config import ApiKey, Settings
from app.http.early_errors import send_error

Credentials = Literal["api_key", "metrics_key", "none"]
CREDENTIALS = "credentials"  # the route option naming what a route needs
NO_CREDENTIALS: dict[str, Credentials] = {CREDENTIALS: "none"}
METRICS_KEY: dict[str, Credentials] = {CREDENTIALS: "metrics_key"}
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def match_key(keys: tuple[ApiKey, ...], offered: str) -> ApiKey | None:
    found = None
    offered_bytes = offered.encode()
    for key in keys:
        if hmac.compare_digest(key.key.encode(), offered_bytes):
            found = key
    return found


def may_read(key: ApiKey | None, tenant_id: str) -> bool:
    return key is None or key.tenants is None or tenant_id.lower() in key.tenants


def bearer_token(scope: Scope) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if the request has one."""
    header = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
    scheme, _, token = header.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class CredentialsMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        settings: Settings = scope["litestar_app"].state.settings
        needed: Credentials = scope["route_handler"].opt.get(CREDENTIALS, "api_key")
        scope["auth"] = None  # None: every tenant (auth off on loopback, or no key needed)
        token = bearer_token(scope)
        if needed == "metrics_key" and settings.metrics_key is not None:
            if token is None or not hmac.compare_digest(token.encode(), settings.metrics_key.encode()):
                message = "a metrics key is required: Authorization: Bearer <STATS_METRICS_KEY>"
                await send_error(send, 401, "unauthorized", message, _CHALLENGE)
                return
        elif needed == "api_key" and settings.auth:
            key = None if token is None else match_key(settings.api_keys, token)
            if key is None:
                message = (
                    "an API key is required: Authorization: Bearer <key>"
                    if token is None
                    else "unknown API key"
                )
                await send_error(send, 401, "unauthorized", message, _CHALLENGE)
                return
            tenant_id = scope.get("path_params", {}).get("tenant_id")
            if isinstance(tenant_id, str) and not may_read(key, tenant_id):
                await send_error(send, 403, "forbidden", "this API key may not read this tenant")
                return
            scope["auth"] = key
        await next_app(scope, receive, send)


def every_tenant_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Listing tenants needs a key for every tenant (`key=*`), or auth off."""
    key: ApiKey | None = connection.auth
    if key is not None and key.tenants is not None:
        raise PermissionDeniedException("only a key for every tenant (key=*) may list tenants")
