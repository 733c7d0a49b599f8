"""API keys for the native and Grafana routes .

`Authorization: Bearer <key>`; a key sees only its tenants. Every configured key is compared in
constant time, and all of them are compared, so timing tells nothing about which one was close.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from app.config import ApiKey, Settings


def match_key(keys: tuple[ApiKey, ...], offered: str) -> ApiKey | None:
    found = None
    offered_bytes = offered.encode()
    for key in keys:
        if hmac.compare_digest(key.key.encode(), offered_bytes):
            found = key
    return found


def may_read(key: ApiKey | None, tenant_id: str) -> bool:
    return key is None or key.tenants is None or tenant_id.lower() in key.tenants


def api_key_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    settings: Settings = connection.app.state.settings
    connection.state.api_key = None  # None: every tenant (auth off on loopback)
    if not settings.auth:
        return
    scheme, _separator, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorizedException("an API key is required: Authorization: Bearer <key>")
    key = match_key(settings.api_keys, token.strip())
    if key is None:
        raise NotAuthorizedException("unknown API key")
    connection.state.api_key = key
    tenant_id = str(connection.path_params.get("tenant_id", "")).lower()
    if tenant_id and not may_read(key, tenant_id):
        raise PermissionDeniedException("this API key may not read this tenant")


def every_tenant_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """After api_key_guard: listing tenants needs a key for every tenant (`key=*`), or auth off."""
    key: ApiKey | None = connection.state.api_key
    if key is not None and key.tenants is not None:
        raise PermissionDeniedException("only a key for every tenant (key=*) may list tenants")
